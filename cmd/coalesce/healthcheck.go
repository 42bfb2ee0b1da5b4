package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/coalesce-ml/coalesce/config"
)

// healthcheck asks the server at cfg.HTTP.Addr whether it is ready
// (GET /v2/health/ready) and returns exitOK only on 200. It is the
// container's health check: the image has no shell and no curl.
func healthcheck(cfg *config.Config, stderr io.Writer) int {
	host, port, _ := net.SplitHostPort(cfg.HTTP.Addr) // validated by config
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme, client := "http", &fasthttp.Client{}
	if cfg.TLS.CertFile != "" {
		// The probe asks this host's own server whether it is ready; the
		// certificate names the service, not the loopback address it is
		// probed on, and verifying it would prove nothing here.
		scheme, client.TLSConfig = "https", &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/v2/health/ready"
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodGet)
	if err := client.DoTimeout(req, resp, 3*time.Second); err != nil {
		fmt.Fprintf(stderr, "coalesce healthcheck: %s: %v\n", url, err)
		return exitFail
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		fmt.Fprintf(stderr, "coalesce healthcheck: %s: status %d, not ready\n", url, resp.StatusCode())
		return exitFail
	}
	return exitOK
}
