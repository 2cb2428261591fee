// Command x509-template-check renders a step-ca X.509 template the way step-ca's ACME
// provisioner does (go.step.sm/crypto/x509util, the library step-ca signs with) for a CSR with
// the given names, and prints the certificate's SANs or the template's error.
//
//	x509-template-check TEMPLATE_FILE COMMON_NAME [SAN...]
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"

	"go.step.sm/crypto/x509util"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: x509-template-check TEMPLATE_FILE COMMON_NAME [SAN...]")
		os.Exit(2)
	}
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cn, sans := os.Args[2], os.Args[3:]
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	req := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			req.IPAddresses = append(req.IPAddresses, ip)
		} else {
			req.DNSNames = append(req.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, req, key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// As step-ca's ACME provisioner: the CSR's common name and SANs, and the CSR itself.
	data := x509util.CreateTemplateData(cn, sans)
	data.SetCertificateRequest(cr)
	cert, err := x509util.NewCertificate(cr, x509util.WithTemplate(string(text), data))
	if err != nil {
		fmt.Fprintln(os.Stderr, "refused:", err)
		os.Exit(1)
	}
	for _, s := range cert.SANs {
		fmt.Println(s.Type, s.Value)
	}
}
