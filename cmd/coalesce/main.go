// Command coalesce is the Coalesce inference sidecar.
//
//	coalesce [serve] [flags]   serve the model repository (the default)
//	coalesce healthcheck       exit 0 when the local server answers ready
//	coalesce version           print version, commit and Go version
//	coalesce profile --model M --data FILE
//	                           write models/M/profile.json for drift detection
//
// Every configuration key is a flag of the same dotted name; run
// coalesce --help for the list.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"

	"github.com/coalesce-ml/coalesce/config"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// Exit statuses.
const (
	exitOK     = 0
	exitFail   = 1 // run-time failure (listen error, unhealthy, unclean shutdown)
	exitConfig = 2 // bad configuration, flags or model repository
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, code := parseConfig("serve", args, environ, stdout, stderr)
		if cfg == nil {
			return code
		}
		return serve(cfg, stdout, stderr)
	case "healthcheck":
		cfg, code := parseConfig("healthcheck", args, environ, stdout, stderr)
		if cfg == nil {
			return code
		}
		return healthcheck(cfg, stderr)
	case "profile":
		return profileCmd(args, stdout, stderr) // profile.go
	case "version":
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	case "help":
		usage(config.Flags("coalesce"), stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "coalesce: unknown command %q; want serve, healthcheck, profile or version (coalesce --help)\n", cmd)
	return exitConfig
}

// parseConfig parses flags and loads the configuration. On failure it
// prints one line and returns a nil config and the exit status.
func parseConfig(name string, args, environ []string, stdout, stderr io.Writer) (*config.Config, int) {
	fs := config.Flags("coalesce " + name)
	fs.SetOutput(io.Discard)
	if err := oneDash(fs, args); err != nil {
		fmt.Fprintf(stderr, "coalesce: %v (coalesce --help lists every flag)\n", err)
		return nil, exitConfig
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage(fs, stdout)
			return nil, exitOK
		}
		fmt.Fprintf(stderr, "coalesce: %v (coalesce --help lists every flag)\n", err)
		return nil, exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "coalesce: unexpected argument %q; want flags only (coalesce --help)\n", fs.Arg(0))
		return nil, exitConfig
	}
	cfg, err := config.Load(fs, environ)
	if err != nil {
		fmt.Fprintf(stderr, "coalesce: %v\n", err)
		return nil, exitConfig
	}
	return cfg, exitOK
}

// oneDash refuses a long flag written with one dash (-http.addr). pflag
// reads "-http.addr" as the shorthand cluster -h -t -t ..., and since -h
// asks for help, the server printed its help and exited 0 instead of
// starting with the address the user meant.
func oneDash(fs *pflag.FlagSet, args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		if strings.HasPrefix(a, "--") {
			// Skip the value of a long flag given as "--key value".
			if f := fs.Lookup(a[2:]); f != nil && f.NoOptDefVal == "" && !strings.Contains(a, "=") {
				i++
			}
			continue
		}
		if len(a) < 3 || a[0] != '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if fs.Lookup(name) != nil || strings.Contains(name, ".") {
			return fmt.Errorf("flag %s has one dash; want --%s", a, a[1:])
		}
	}
	return nil
}

func usage(fs *pflag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, `Coalesce %s: a sidecar inference server.

Usage:
  coalesce [serve] [flags]   serve the model repository (default command)
  coalesce healthcheck [flags]
                             exit 0 when the server at --http.addr answers ready
  coalesce version           print version, commit and Go version
  coalesce profile --model NAME --data FILE
                             write the model's drift reference profile
                             (coalesce profile --help)

Configuration: defaults < YAML file (--config) < environment (COALESCE_...) < flags.
Flags:
`, version)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func versionLine() string {
	c := commit
	if c == "" {
		c = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	return fmt.Sprintf("coalesce %s (commit %s, %s %s/%s)", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
