package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"

	"github.com/coalesce-ml/coalesce/config"
	"github.com/coalesce-ml/coalesce/internal/fakemodel"
)

const (
	keyApp   = "sk-app-0123456789abcdef"
	keyOps   = "sk-ops-0123456789abcdef"
	keyOther = "sk-oth-0123456789abcdef"
	keyFree  = "sk-fre-0123456789abcdef"
)

var guardBody = []byte(`{"features":[1,2,3,4]}`)

// keyFile is a key file: app may call double only, ops anything and the
// admin plane; free is in a tier of 2 requests at once.
func keyFile(extra string) string {
	return `tiers:
  free: {rate: 0.001, burst: 2}
keys:
  - {name: app, key: ` + keyApp + `, models: [double]}
  - {name: ops, key: ` + keyOps + `, admin: true}
  - {name: free, key: ` + keyFree + `, tier: free}
` + extra
}

func writeKeys(t testing.TB, path, body string) {
	t.Helper()
	// Write and rename, as a Secret update does: a reader never sees
	// half a file.
	tmp := path + ".tmp"
	must(t, os.WriteFile(tmp, []byte(body), 0o600))
	must(t, os.Rename(tmp, path))
}

// guardServer starts a server with the key file body (none when "") and
// cfg's other settings, logging to log (nil: discarded).
func guardServer(t testing.TB, body string, edit func(*config.Config), log *slog.Logger) (*Server, *fasthttp.HostClient, *metrics.Set, string) {
	t.Helper()
	cfg := patientConfig()
	var path string
	if body != "" {
		path = filepath.Join(t.TempDir(), "keys.yaml")
		writeKeys(t, path, body)
		cfg.Auth.KeysFile = path
	}
	cfg.Auth.ReloadInterval = 0
	if edit != nil {
		edit(cfg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	set := metrics.NewSet()
	s, err := New(cfg, "test", fakemodel.Registry(t), set, log)
	must(t, err)
	ln := fasthttputil.NewInmemoryListener()
	srv := s.HTTPServer()
	go srv.Serve(ln) //nolint:errcheck // returns when the listener closes
	t.Cleanup(func() { srv.Shutdown(); ln.Close(); s.Close(context.Background()) })
	return s, &fasthttp.HostClient{Addr: "test", Dial: func(string) (net.Conn, error) { return ln.Dial() }}, set, path
}

// send is do with every response header.
func send(t testing.TB, c *fasthttp.HostClient, method, path string, body []byte, headers ...string) (int, string, *fasthttp.ResponseHeader) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://test" + path)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	req.SetBody(body)
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h := &fasthttp.ResponseHeader{}
	resp.Header.CopyTo(h)
	return resp.StatusCode(), string(resp.Body()), h
}

func counter(set *metrics.Set, name string) uint64 {
	return set.GetOrCreateCounter(name).Get()
}

func TestAuth(t *testing.T) {
	_, c, set, _ := guardServer(t, keyFile(""), nil, nil)
	tests := []struct {
		name, method, path string
		body               []byte
		headers            []string
		status             int
		want               string // substring of the body
		challenge          string // WWW-Authenticate
	}{
		{"bearer", "POST", "/predict", guardBody, []string{"Authorization", "Bearer " + keyApp}, 200, `{"prediction":["d"]}`, ""},
		{"bearer lower case", "POST", "/predict", guardBody, []string{"Authorization", "bearer " + keyOps}, 200, `{"prediction":["d"]}`, ""},
		{"x-api-key", "POST", "/predict", guardBody, []string{"X-API-Key", keyApp}, 200, `{"prediction":["d"]}`, ""},
		{"v2 with key", "POST", "/v2/models/double/infer", []byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`), []string{"X-API-Key", keyApp}, 200, `"outputs"`, ""},
		{"missing", "POST", "/predict", guardBody, nil, 401,
			`{"error":"API key required; send it as Authorization: Bearer <key> or X-API-Key: <key>"}`, `Bearer realm="coalesce"`},
		{"invalid", "POST", "/predict", guardBody, []string{"Authorization", "Bearer " + keyOther}, 401,
			`{"error":"API key is not valid; send a valid key as Authorization: Bearer <key> or X-API-Key: <key>"}`, `Bearer realm="coalesce", error="invalid_token"`},
		{"basic is not a key", "POST", "/predict", guardBody, []string{"Authorization", "Basic " + keyApp}, 401, "API key required", `Bearer realm="coalesce"`},
		{"metadata needs a key", "GET", "/v2/models/double", nil, nil, 401, "API key required", `Bearer realm="coalesce"`},
		{"unknown path needs a key", "GET", "/nowhere", nil, nil, 401, "API key required", `Bearer realm="coalesce"`},
		// 403 before decoding: the body is not even valid JSON.
		{"forbidden model", "POST", "/v2/models/multi/infer", []byte("{{{"), []string{"X-API-Key", keyApp}, 403,
			`{"error":"API key \"app\" may not call model \"multi\""}`, ""},
		{"forbidden via predict", "POST", "/predict?model=multi", []byte("{{{"), []string{"X-API-Key", keyApp}, 403, `may not call model \"multi\"`, ""},
		{"allowed key decodes", "POST", "/v2/models/multi/infer", []byte("{{{"), []string{"X-API-Key", keyOps}, 400, "", ""},
		{"forbidden metadata", "GET", "/v2/models/multi", nil, []string{"X-API-Key", keyApp}, 403, `may not call model \"multi\"`, ""},
		{"forbidden readiness", "GET", "/v2/models/multi/ready", nil, []string{"X-API-Key", keyApp}, 403, `may not call model \"multi\"`, ""},
		{"forbidden tfs status", "GET", "/v1/models/multi", nil, []string{"X-API-Key", keyApp}, 403, `may not call model \"multi\"`, ""},
		{"allowed metadata", "GET", "/v2/models/double", nil, []string{"X-API-Key", keyApp}, 200, `"name":"double"`, ""},
		{"live open", "GET", "/v2/health/live", nil, nil, 200, "", ""},
		{"ready open", "GET", "/v2/health/ready", nil, nil, 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, h := send(t, c, tt.method, tt.path, tt.body, tt.headers...)
			if status != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("%s %s = %d %s; want %d %s", tt.method, tt.path, status, body, tt.status, tt.want)
			}
			if got := string(h.Peek("WWW-Authenticate")); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q; want %q", got, tt.challenge)
			}
			for _, k := range []string{keyApp, keyOps, keyOther, keyApp[:10]} {
				if strings.Contains(body, k) || strings.Contains(h.String(), k) {
					t.Errorf("the answer repeats key material %q: %s %s", k, h, body)
				}
			}
		})
	}
	for reason, want := range map[string]uint64{"missing": 4, "invalid": 1, "forbidden": 5} {
		if got := counter(set, `coalesce_auth_failures_total{reason="`+reason+`"}`); got != want {
			t.Errorf("coalesce_auth_failures_total{reason=%q} = %d; want %d", reason, got, want)
		}
	}
	var b bytes.Buffer
	set.WritePrometheus(&b)
	for _, k := range []string{keyApp, keyOps, keyOther} {
		if strings.Contains(b.String(), k) {
			t.Errorf("/metrics holds key material %q", k)
		}
	}
}

func TestAdminKey(t *testing.T) {
	s, _, set, _ := guardServer(t, keyFile(""), func(c *config.Config) { c.Auth.AdminPlane = true }, nil)
	h := s.AdminHandler(set, false)
	f := func(path string, headers []string, status int, challenge string) {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(path)
		for i := 0; i+1 < len(headers); i += 2 {
			ctx.Request.Header.Set(headers[i], headers[i+1])
		}
		h(&ctx)
		if got := ctx.Response.StatusCode(); got != status {
			t.Errorf("admin GET %s %v = %d %s; want %d", path, headers, got, ctx.Response.Body(), status)
		}
		if got := string(ctx.Response.Header.Peek("WWW-Authenticate")); got != challenge {
			t.Errorf("admin GET %s: WWW-Authenticate = %q; want %q", path, got, challenge)
		}
	}
	f("/metrics", nil, 401, `Bearer realm="coalesce"`)
	f("/metrics", []string{"X-API-Key", keyApp}, 403, "")
	f("/metrics", []string{"Authorization", "Bearer " + keyOps}, 200, "")
	f("/v2/health/ready", nil, 200, "")
	f("/v2/health/live", nil, 200, "")
}

// TestRepositoryAdminKey: with keys on and auth.admin_plane off, the
// repository API (which loads and unloads models) still takes an admin
// key; /metrics stays open.
func TestRepositoryAdminKey(t *testing.T) {
	s, _, set, _ := guardServer(t, keyFile(""), nil, nil)
	h := s.AdminHandler(set, false)
	f := func(method, path string, headers []string, status int) {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(path)
		for i := 0; i+1 < len(headers); i += 2 {
			ctx.Request.Header.Set(headers[i], headers[i+1])
		}
		h(&ctx)
		if got := ctx.Response.StatusCode(); got != status {
			t.Errorf("admin %s %s %v = %d %s; want %d", method, path, headers, got, ctx.Response.Body(), status)
		}
	}
	f("POST", "/v2/repository/index", nil, 401)
	f("POST", "/v2/repository/models/double/unload", []string{"X-API-Key", keyApp}, 403)
	f("POST", "/v2/repository/index", []string{"Authorization", "Bearer " + keyOps}, 200)
	f("GET", "/metrics", nil, 200)
}

func TestRateLimitKeyTier(t *testing.T) {
	_, c, set, _ := guardServer(t, keyFile(""), func(c *config.Config) {
		c.Rate.Key = config.Bucket{Rate: 0.001, Burst: 3}
	}, nil)
	f := func(key string, want int) {
		t.Helper()
		status, body, h := send(t, c, "POST", "/predict", guardBody, "X-API-Key", key)
		if status != want {
			t.Fatalf("key %s: %d %s; want %d", key[:6], status, body, want)
		}
		if status == 429 {
			for k, v := range map[string]string{"Retry-After": "1000", "RateLimit-Limit": "", "RateLimit-Remaining": "0", "RateLimit-Reset": "1000"} {
				if got := string(h.Peek(k)); (v != "" && got != v) || got == "" {
					t.Errorf("429: %s = %q; want %q", k, got, v)
				}
			}
			if !strings.Contains(body, "rate limit exceeded: this API key's limit") {
				t.Errorf("429 body %s; want it to name the key's limit", body)
			}
		}
	}
	f(keyFree, 200) // tier free: burst 2
	f(keyFree, 200)
	f(keyFree, 429)
	f(keyApp, 200) // no tier: ratelimit.key, burst 3, its own bucket
	f(keyApp, 200)
	f(keyApp, 200)
	f(keyApp, 429)
	f(keyOps, 200) // independent of the others
	if got := counter(set, `coalesce_ratelimited_total{scope="key",tier="free"}`); got != 1 {
		t.Errorf(`coalesce_ratelimited_total{scope="key",tier="free"} = %d; want 1`, got)
	}
	if got := counter(set, `coalesce_ratelimited_total{scope="key",tier="default"}`); got != 1 {
		t.Errorf(`coalesce_ratelimited_total{scope="key",tier="default"} = %d; want 1`, got)
	}
}

func TestRateLimitScopesWithoutAuth(t *testing.T) {
	tests := []struct {
		name   string
		rule   func(*config.Config)
		metric string
		words  string
	}{
		{"client", func(c *config.Config) { c.Rate.Client = config.Bucket{Rate: 0.001, Burst: 2} }, `{scope="client"}`, "this client address's limit of 2"},
		{"model", func(c *config.Config) { c.Rate.Model = config.Bucket{Rate: 0.001, Burst: 2} }, `{scope="model",model="double"}`, `model \"double\"'s limit of 2`},
		{"global", func(c *config.Config) { c.Rate.Global = config.Bucket{Rate: 0.001, Burst: 2} }, `{scope="global"}`, "the server's limit of 2"},
	}
	for _, tt := range tests {
		for _, shadow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s shadow=%v", tt.name, shadow), func(t *testing.T) {
				_, c, set, _ := guardServer(t, "", func(c *config.Config) { tt.rule(c); c.Rate.Shadow = shadow }, nil)
				want := []int{200, 200, 429, 429}
				if shadow {
					want = []int{200, 200, 200, 200}
				}
				for i, w := range want {
					status, body, _ := send(t, c, "POST", "/predict", guardBody)
					if status != w {
						t.Fatalf("request %d: %d %s; want %d", i, status, body, w)
					}
					if status == 429 && !strings.Contains(body, tt.words) {
						t.Errorf("429 body %s; want %q", body, tt.words)
					}
				}
				limited, shadowed := counter(set, "coalesce_ratelimited_total"+tt.metric), counter(set, "coalesce_ratelimit_shadow_total"+tt.metric)
				if shadow && (limited != 0 || shadowed != 2) || !shadow && (limited != 2 || shadowed != 0) {
					t.Errorf("limited %d, shadow-limited %d; want %d, %d", limited, shadowed, map[bool]int{false: 2}[shadow], map[bool]int{true: 2}[shadow])
				}
				// Health and metadata are not rate limited.
				if status, _, _ := send(t, c, "GET", "/v2/health/ready", nil); status != 200 {
					t.Errorf("readiness after the limit: %d; want 200", status)
				}
			})
		}
	}
}

// TestKeyReloadUnderLoad rewrites the key file while clients call with a
// key that stays valid throughout: none of their requests may fail. The
// rewrites alternate a file adding a key, an invalid file (the keys in
// force stay) and the original.
func TestKeyReloadUnderLoad(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, c, set, path := guardServer(t, keyFile(""), nil, log)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := doErr(c, "POST", "/predict", guardBody, "X-API-Key", keyApp)
				if err != nil || r.status != 200 {
					if failed.Add(1) <= 5 {
						t.Errorf("request with a still-valid key: %v %d %s", err, r.status, r.body)
					}
					continue
				}
				ok.Add(1)
			}
		})
	}
	invalid := "keys:\n  - {name: app, key: " + keyApp + ", models: [double]\n  - {name: x, key: " + keyOther + "}\n"
	for i := range 30 {
		switch i % 3 {
		case 0:
			writeKeys(t, path, keyFile("  - {name: other, key: "+keyOther+"}\n"))
			must(t, s.Reload())
			if st, _, _ := send(t, c, "POST", "/predict", guardBody, "X-API-Key", keyOther); st != 200 {
				t.Fatalf("after adding key other: %d; want 200", st)
			}
		case 1:
			writeKeys(t, path, invalid)
			if err := s.Reload(); err == nil {
				t.Fatal("Reload of an invalid file: nil error")
			}
			if st, _, _ := send(t, c, "POST", "/predict", guardBody, "X-API-Key", keyOther); st != 200 {
				t.Fatalf("after an invalid file: key other %d; want 200 (the keys in force stay)", st)
			}
		case 2:
			writeKeys(t, path, keyFile(""))
			must(t, s.Reload())
			if st, _, _ := send(t, c, "POST", "/predict", guardBody, "X-API-Key", keyOther); st != 401 {
				t.Fatalf("after removing key other: %d; want 401", st)
			}
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d requests with the still-valid key failed, %d succeeded; want 0 failed", failed.Load(), ok.Load())
	}
	if got, want := counter(set, `coalesce_auth_reloads_total{result="error"}`), uint64(10); got != want {
		t.Errorf(`coalesce_auth_reloads_total{result="error"} = %d; want %d`, got, want)
	}
	// Nothing logged repeats a key, though a failed reload's file held
	// two, and clients sent invalid ones.
	send(t, c, "POST", "/predict", guardBody, "Authorization", "Bearer "+keyOther+"x")
	out := logs.String()
	if !strings.Contains(out, "key file not reloaded") || !strings.Contains(out, "line 1: not a valid key file") {
		t.Errorf("the log does not say why a reload failed (want the line):\n%s", out)
	}
	for _, k := range []string{keyApp, keyOps, keyOther, keyFree, keyApp[3:14]} {
		if strings.Contains(out, k) {
			t.Errorf("the log holds key material %q:\n%s", k, out)
		}
	}
}

// TestKeyReloadOnChange: with auth.reload_interval the file is re-read
// when it changes, without a call to Reload.
func TestKeyReloadOnChange(t *testing.T) {
	_, c, _, path := guardServer(t, keyFile(""), func(c *config.Config) { c.Auth.ReloadInterval = 5 * time.Millisecond }, nil)
	writeKeys(t, path, keyFile("  - {name: other, key: "+keyOther+"}\n"))
	for i := 0; ; i++ {
		if st, _, _ := send(t, c, "POST", "/predict", guardBody, "X-API-Key", keyOther); st == 200 {
			break
		}
		if i == 1000 {
			t.Fatal("the new key was not accepted within ~10s of the file's change")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// writeCert writes a self-signed certificate for 127.0.0.1 with serial
// and its key, made now, and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
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
	must(t, os.WriteFile(certFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	must(t, os.Rename(keyFile+".tmp", keyFile))
	must(t, os.Rename(certFile+".tmp", certFile))
	crt, err := x509.ParseCertificate(der)
	must(t, err)
	return crt
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile, 1)
	cfg := patientConfig()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	s, err := New(cfg, "test", fakemodel.Registry(t), metrics.NewSet(), slog.New(slog.DiscardHandler))
	must(t, err)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := s.HTTPServer()
	go srv.Serve(s.Listener(tls.NewListener(tcp, s.TLSConfig()))) //nolint:errcheck // ends with the listener
	t.Cleanup(func() { srv.Shutdown(); s.Close(context.Background()) })

	predict := func(trust *x509.Certificate) (int, string, error) {
		pool := x509.NewCertPool()
		pool.AddCert(trust)
		c := &fasthttp.HostClient{Addr: tcp.Addr().String(), IsTLS: true, TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		defer c.CloseIdleConnections()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("https://" + tcp.Addr().String() + "/predict")
		req.Header.SetMethod("POST")
		req.SetBody(guardBody)
		err := c.DoTimeout(req, resp, 10*time.Second)
		return resp.StatusCode(), string(resp.Body()), err
	}
	if st, body, err := predict(first); err != nil || st != 200 || body != `{"prediction":["d"]}` {
		t.Fatalf("prediction over TLS: %v %d %s; want 200", err, st, body)
	}
	// Plain HTTP on the TLS port is refused.
	conn, err := net.Dial("tcp", tcp.Addr().String())
	must(t, err)
	fmt.Fprintf(conn, "GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
	must(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	conn.Close()
	if bytes.Contains(buf[:n], []byte("200 OK")) {
		t.Errorf("plain HTTP on the TLS port answered %q", buf[:n])
	}
	// A new pair is served after Reload; a broken one keeps it.
	second := writeCert(t, certFile, keyFile, 2)
	must(t, s.Reload())
	if _, _, err := predict(first); err == nil {
		t.Errorf("after the reload the old certificate still verifies")
	}
	if st, _, err := predict(second); err != nil || st != 200 {
		t.Fatalf("with the new certificate: %v %d; want 200", err, st)
	}
	must(t, os.WriteFile(keyFile, []byte("not a key"), 0o600))
	if err := s.Reload(); err == nil {
		t.Error("Reload with a broken key file: nil error")
	}
	if st, _, err := predict(second); err != nil || st != 200 {
		t.Errorf("after a failed reload: %v %d; want the pair in force", err, st)
	}
}

// TestGuardWatcherStops: the file watcher New starts for the key file and
// the TLS pair ends with Close.
func TestGuardWatcherStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	writeKeys(t, keys, keyApp+"\n")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCert(t, certFile, keyFile, 1)
	cfg := patientConfig()
	cfg.Auth.KeysFile, cfg.Auth.ReloadInterval = keys, time.Millisecond
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	s, err := New(cfg, "test", fakemodel.Registry(t), metrics.NewSet(), slog.New(slog.DiscardHandler))
	must(t, err)
	if s.guard.watch == nil {
		t.Fatal("no watcher with auth.reload_interval set")
	}
	must(t, s.Close(context.Background()))
}

// TestGuardStartErrors: an invalid key file or TLS pair stops New with an
// error naming it, without key material.
func TestGuardStartErrors(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	writeKeys(t, keys, "sk-short\n"+keyApp+"\n"+keyApp+"\n")
	cfg := patientConfig()
	cfg.Auth.KeysFile = keys
	_, err := New(cfg, "test", fakemodel.Registry(t), metrics.NewSet(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "line 1: key is 8 bytes") || strings.Contains(err.Error(), "sk-short") {
		t.Errorf("New with a short key: %v; want line 1 named, the key not", err)
	}
	cfg = patientConfig()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = keys, keys
	if _, err := New(cfg, "test", fakemodel.Registry(t), metrics.NewSet(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Errorf("New with a key file for a certificate: %v; want an error naming tls.cert_file", err)
	}
}

func TestClientKey(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := clientKey(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("clientKey(%s) = %s; want %s", in, got, want)
		}
	}
	f("10.1.2.3", "10.1.2.3")
	f("::ffff:10.1.2.3", "10.1.2.3")
	f("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::")
	f("2001:db8:1:2::1", "2001:db8:1:2::")
}
