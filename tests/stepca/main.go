// Command step-ca: the smallest main that runs smallstep's CA server
// (commands.AppCommand) from Debian's golang-github-smallstep-certificates-dev.
package main

import (
	"fmt"
	"os"

	"github.com/smallstep/certificates/commands"
	"github.com/urfave/cli"
)

func main() {
	app := cli.NewApp()
	app.Name = "step-ca"
	app.Usage = "step-ca <config> --password-file FILE"
	app.Flags = commands.AppCommand.Flags
	app.Action = commands.AppCommand.Action
	app.HideVersion = true
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
