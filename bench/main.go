// Command bench is Coalesce's load-testing tool.
//
//	go run ./bench suite [-scenario bench/scenarios/standard.yaml] [-out bench/results]
//	go run ./bench run -addr 127.0.0.1:8080 [-protocol predict] [-c 1,16,64 | -rate 500,2000] ...
//	go run ./bench noop -addr 127.0.0.1:18080
//
// suite starts every target of a scenario (Coalesce, the seed's Flask
// example, gunicorn, a bare fasthttp server), measures them interleaved,
// and writes a report with charts under bench/results/. run measures one
// server that is already running. noop is the bare fasthttp server the
// suite uses as the HTTP ceiling. See bench/README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		usage()
		return 2
	}
	var err error
	switch args[0] {
	case "suite":
		err = suiteCmd(ctx, args[1:])
	case "run":
		err = runCmd(ctx, args[1:])
	case "noop":
		err = noopCmd(ctx, args[1:])
	case "simupstream":
		err = simUpstreamCmd(ctx, args[1:])
	case "help", "-h", "--help":
		usage()
		return 0
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown command %q\n", args[0])
		usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func usage() {
	fmt.Fprint(os.Stderr, `Usage:
  bench suite [flags]   start the targets of a scenario, measure them interleaved, write a report
  bench run [flags]     measure one running server (closed or open loop, with a sweep)
  bench noop [flags]    serve the bare fasthttp ceiling (POST /predict -> fixed body)
  bench simupstream [flags]  serve a simulated batched KServe V2 model server (fixed cost per call)
Run "bench <command> -h" for the flags of a command; bench/README.md explains them all.
`)
}
