package proxy

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// certPair is the data plane's TLS certificate, re-read from its files on
// change or SIGHUP: a handshake takes whichever pair is in force.
type certPair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// load reads the pair; on error the pair in force stays.
func (c *certPair) load() error {
	crt, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		// LoadX509KeyPair's errors describe PEM blocks, never their
		// contents.
		return fmt.Errorf("tls.cert_file %s, tls.key_file %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&crt)
	return nil
}

// TLSConfig returns the data plane's TLS configuration, or nil when
// tls.cert_file is not set. Serve the data plane on
// s.Listener(tls.NewListener(ln, cfg)), so that the edge tracks the TLS
// connections.
func (s *Server) TLSConfig() *tls.Config {
	c := s.guard.tls
	if c == nil {
		return nil
	}
	return &tls.Config{
		// operations.md §6: TLS 1.2 at least; Go prefers 1.3.
		MinVersion: tls.VersionTLS12,
		// fasthttp speaks HTTP/1.1 only.
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}
