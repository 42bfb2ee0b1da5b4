package grpcserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/coalesce-ml/coalesce/grpcserver"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
	"github.com/coalesce-ml/coalesce/proto/inferencepb"
	"github.com/coalesce-ml/coalesce/proxy"
)

// TestTLS: with tls.cert_file the gRPC port speaks TLS (HTTP/2 by ALPN)
// with the data plane's certificate, and refuses plaintext.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	crt := writeCert(t, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	p, err := proxy.New(cfg, "test", fakemodel.Registry(t), metrics.NewSet(), slog.New(slog.DiscardHandler))
	must(t, err)
	g := grpcserver.New(cfg, p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go g.Serve(ln) //nolint:errcheck // returns at Stop
	t.Cleanup(func() { g.Stop(); _ = p.Close(context.Background()) })
	pool := x509.NewCertPool()
	pool.AddCert(crt)
	call := func(creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(creds))
		must(t, err)
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = inferencepb.NewGRPCInferenceServiceClient(conn).ServerLive(ctx, &inferencepb.ServerLiveRequest{})
		return err
	}
	if err := call(credentials.NewTLS(&tls.Config{RootCAs: pool})); err != nil {
		t.Errorf("ServerLive over TLS: %v", err)
	}
	if err := call(insecure.NewCredentials()); err == nil {
		t.Errorf("ServerLive in plaintext to the TLS port succeeded; want an error")
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "coalesce test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(priv)
	must(t, err)
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	crt, err := x509.ParseCertificate(der)
	must(t, err)
	return crt
}
