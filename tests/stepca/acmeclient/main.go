// Command acme-client is the smallest RFC 8555 client the step-ca tests need
// (golang.org/x/crypto/acme, from Debian's sources like step-ca itself): it registers a fresh
// account at DIRECTORY_URL, trusting only the root in ROOT_PEM, orders the given DNS names,
// answers every HTTP-01 challenge by serving the key authorization on LISTEN itself (":80",
// where the CA connects), finalizes with a fresh P-256 CSR and writes the chain (leaf first)
// to OUT. Nothing is written unless the certificate was issued; on refusal it prints the
// step that was refused and the CA's problem document and exits 1.
//
//	acme-client DIRECTORY_URL ROOT_PEM LISTEN OUT DNS_NAME...
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

func main() {
	if len(os.Args) < 6 {
		fmt.Fprintln(os.Stderr, "usage: acme-client DIRECTORY_URL ROOT_PEM LISTEN OUT DNS_NAME...")
		os.Exit(2)
	}
	dir, rootFile, listen, out, names := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5:]
	if err := issue(dir, rootFile, listen, out, names); err != nil {
		fmt.Fprintln(os.Stderr, "acme-client:", describe(err))
		os.Exit(1)
	}
}

// refused names the protocol step an error came from.
type refused struct {
	step string
	err  error
}

func (r *refused) Error() string { return r.step + ": " + r.err.Error() }
func (r *refused) Unwrap() error { return r.err }

func at(step string, err error) error {
	if err == nil {
		return nil
	}
	return &refused{step, err}
}

// describe spells out the CA's problem document (type, status, detail, subproblems).
func describe(err error) string {
	var step string
	var r *refused
	if errors.As(err, &r) {
		step = r.step + " refused: "
	}
	var p *acme.Error
	if errors.As(err, &p) {
		s := fmt.Sprintf("%sstatus %d, problem %s, detail %q", step, p.StatusCode, p.ProblemType, p.Detail)
		for _, sub := range p.Subproblems {
			s += fmt.Sprintf("; subproblem %s %q (%s)", sub.Type, sub.Detail, sub.Identifier.Value)
		}
		return s
	}
	var a *acme.AuthorizationError
	if errors.As(err, &a) {
		return fmt.Sprintf("%sauthorization for %s failed: %v", step, a.Identifier, a)
	}
	return err.Error()
}

func issue(dirURL, rootFile, listen, out string, names []string) error {
	rootPEM, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return fmt.Errorf("%s holds no PEM certificate", rootFile)
	}
	accountKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	client := &acme.Client{
		Key:          accountKey,
		DirectoryURL: dirURL,
		HTTPClient: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots}},
		},
		// Only bad nonces are retried: a refusal is reported at once.
		RetryBackoff: func(n int, _ *http.Request, res *http.Response) time.Duration {
			if n > 3 || res.StatusCode != http.StatusBadRequest {
				return 0
			}
			return 100 * time.Millisecond
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// HTTP-01: the CA fetches http://NAME/.well-known/acme-challenge/TOKEN.
	var mu sync.Mutex
	tokens := map[string]string{}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s for HTTP-01: %w", listen, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ka, ok := tokens[strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, ka)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	if _, err := client.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		return at("new-account", err)
	}
	order, err := client.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		return at("new-order", err)
	}
	for _, u := range order.AuthzURLs {
		z, err := client.GetAuthorization(ctx, u)
		if err != nil {
			return at("authorization", err)
		}
		if z.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, c := range z.Challenges {
			if c.Type == "http-01" {
				chal = c
			}
		}
		if chal == nil {
			return fmt.Errorf("the CA offers no http-01 challenge for %s", z.Identifier.Value)
		}
		ka, err := client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		mu.Lock()
		tokens[chal.Token] = ka
		mu.Unlock()
		if _, err := client.Accept(ctx, chal); err != nil {
			return at("challenge "+z.Identifier.Value, err)
		}
		if _, err := client.WaitAuthorization(ctx, z.URI); err != nil {
			return at("authorization "+z.Identifier.Value, err)
		}
	}
	if order, err = client.WaitOrder(ctx, order.URI); err != nil {
		return at("order", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: names[0]},
		DNSNames: names,
	}, key)
	if err != nil {
		return err
	}
	chain, _, err := client.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return at("finalize", err)
	}
	var b strings.Builder
	for _, der := range chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		os.Remove(out)
		return err
	}
	return f.Close()
}
