package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	appKey   = "sk-app-e2e-0123456789abcdef"
	opsKey   = "sk-ops-e2e-0123456789abcdef"
	laterKey = "sk-new-e2e-0123456789abcdef"
)

func writeAtomically(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond every 20ms for up to 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within 10s", what)
}

// TestAuthBinary runs the binary with a key file: keys on the data plane,
// an admin key on the admin plane, SIGHUP reloads (a valid file, then an
// invalid one that keeps the keys), and no key in its output or command
// line.
func TestAuthBinary(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	base := "keys:\n  - {name: app, key: " + appKey + ", models: [digits-mlp]}\n  - {name: ops, key: " + opsKey + ", admin: true}\n"
	writeAtomically(t, keys, base)
	s := startServer(t, "--models.default", "digits-mlp", "--auth.keys_file", keys, "--auth.admin_plane", "--auth.reload_interval", "0s")
	body := readFile(t, "models", "digits-mlp", "examples", "predict.json")
	predict := func(key string) int {
		h := map[string]string{}
		if key != "" {
			h["X-API-Key"] = key
		}
		st, _, err := httpDo(s.addr, "POST", "/predict", body, h)
		if err != nil && !(st == 401 && errors.Is(err, errConnClose)) {
			// A 401 is answered from the headers, without reading the
			// body, so it closes the connection.
			t.Fatal(err)
		}
		return st
	}
	if st := predict(""); st != 401 {
		t.Errorf("without a key: %d; want 401", st)
	}
	if st := predict(appKey); st != 200 {
		t.Fatalf("with the key: %d; want 200", st)
	}
	if st, b, _ := httpDo(s.addr, "POST", "/predict?model=iris-logreg", []byte(`{"features":[1,2,3,4]}`), map[string]string{"Authorization": "Bearer " + appKey}); st != 403 {
		t.Errorf("a model the key may not call: %d %s; want 403", st, b)
	}
	if st := predict(laterKey); st != 401 {
		t.Errorf("a key not yet in the file: %d; want 401", st)
	}
	writeAtomically(t, keys, base+"  - {name: later, key: "+laterKey+"}\n")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the key added before SIGHUP is accepted", func() bool { return predict(laterKey) == 200 })
	writeAtomically(t, keys, "keys: [{name: broken, key: "+laterKey+"\n")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failed reload is logged", func() bool { return strings.Contains(s.stdout.String(), "key file not reloaded") })
	if st := predict(laterKey); st != 200 {
		t.Errorf("after an invalid file: %d; want 200 (the keys in force stay)", st)
	}
	// Admin plane: health open, /metrics for admin keys only.
	for _, c := range []struct {
		path, key string
		want      int
	}{{"/v2/health/ready", "", 200}, {"/metrics", "", 401}, {"/metrics", appKey, 403}, {"/metrics", opsKey, 200}} {
		h := map[string]string{}
		if c.key != "" {
			h["Authorization"] = "Bearer " + c.key
		}
		st, b, _ := httpDo(s.admin, "GET", c.path, nil, h)
		if st != c.want {
			t.Errorf("admin GET %s: %d; want %d", c.path, st, c.want)
		}
		if st == 200 && c.path == "/metrics" && !strings.Contains(string(b), `coalesce_auth_failures_total{reason="forbidden"} 2`) {
			t.Errorf("/metrics lacks coalesce_auth_failures_total{reason=\"forbidden\"} 2 (the two 403s above)")
		}
	}
	out := s.stdout.String() + s.stderr.String() + strings.Join(s.cmd.Args, " ")
	for _, k := range []string{appKey, opsKey, laterKey, appKey[7:20]} {
		if strings.Contains(out, k) {
			t.Errorf("key material %q in the output or command line:\n%s", k, out)
		}
	}
}

// TestTLSBinary serves the data plane over TLS with a certificate made
// now: the health check subcommand and a prediction over HTTPS succeed.
func TestTLSBinary(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coalesce e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeAtomically(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	crt, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(crt)

	addr, admin := freeAddr(t), freeAddr(t)
	tlsFlags := []string{"--tls.cert_file", certFile, "--tls.key_file", keyFile}
	cmd := exec.Command(binPath, append([]string{"serve", "--http.addr", addr, "--admin.addr", admin, "--models.repository", filepath.Join(repoRoot, "models"), "--models.default", "digits-mlp"}, tlsFlags...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := &fasthttp.Client{TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	do := func(method, path string, body []byte) (int, error) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("https://" + addr + path)
		req.Header.SetMethod(method)
		req.SetBody(body)
		if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
			return 0, err
		}
		return resp.StatusCode(), nil
	}
	eventually(t, "ready over HTTPS", func() bool { st, _ := do("GET", "/v2/health/ready", nil); return st == 200 })
	hc := exec.Command(binPath, append([]string{"healthcheck", "--http.addr", addr, "--models.repository", filepath.Join(repoRoot, "models")}, tlsFlags...)...)
	if b, err := hc.CombinedOutput(); err != nil {
		t.Errorf("coalesce healthcheck over TLS: %v %s", err, b)
	}
	if st, err := do("POST", "/predict", readFile(t, "models", "digits-mlp", "examples", "predict.json")); err != nil || st != 200 {
		t.Errorf("prediction over TLS: %d %v; want 200", st, err)
	}
}
