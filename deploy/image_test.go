package deploy

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// imageTestEnv selects TestImage: building the image takes a minute or two
// on a fresh machine (the Go toolchain base, a cold build cache), too slow
// and too dependent on the host for every go test run.
const imageTestEnv = "COALESCE_IMAGE_TEST"

// imageConfig is the part of the OCI image configuration the test checks.
type imageConfig struct {
	User         string              `json:"User"`
	Entrypoint   []string            `json:"Entrypoint"`
	Cmd          []string            `json:"Cmd"`
	WorkingDir   string              `json:"WorkingDir"`
	Env          []string            `json:"Env"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Labels       map[string]string   `json:"Labels"`
}

// TestImage builds the image with make image (buildah), then runs it the
// way a container runtime would, without one: the image's root filesystem
// mounted with buildah mount, its entrypoint and command run chrooted into
// it, in its working directory, as its numeric user, with the image's
// environment plus COALESCE_* addresses on free loopback ports. It checks
// the image's configuration, that /predict answers, that coalesce
// healthcheck (the probe a shell-less image can run) exits 0, and that
// SIGTERM ends the server with status 0; it logs the image size.
//
// It runs when COALESCE_IMAGE_TEST=1 (make test-image sets it), as root,
// with buildah installed; otherwise it says why it skipped.
func TestImage(t *testing.T) {
	if os.Getenv(imageTestEnv) != "1" {
		t.Skipf("set %s=1 (make test-image) to build and run the container image; it takes a minute or more", imageTestEnv)
	}
	buildah, err := exec.LookPath("buildah")
	if err != nil {
		t.Skip("buildah is not installed (apt-get install buildah; .ci/run does)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: buildah's chroot isolation, buildah mount and chroot(2)")
	}
	const image = "localhost/coalesce:image-test"
	const commit = "0123456789abcdef0123456789abcdef01234567"
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
		}
		return strings.TrimSpace(string(out))
	}

	start := time.Now()
	build := exec.Command("make", "-C", "..", "image", "IMAGE="+image, "VERSION=v0.0.0-test", "COMMIT="+commit)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image took %v", time.Since(start).Round(100*time.Millisecond))
	t.Cleanup(func() { exec.Command(buildah, "rmi", "-f", image).Run() })

	// The image's configuration.
	var doc struct {
		OCIv1 struct {
			Config imageConfig `json:"config"`
		} `json:"OCIv1"`
	}
	if err := json.Unmarshal([]byte(run(buildah, "inspect", "--type", "image", image)), &doc); err != nil {
		t.Fatalf("buildah inspect: %v", err)
	}
	cfg := doc.OCIv1.Config
	uid, gid, ok := numericUser(cfg.User)
	if !ok || uid == 0 {
		t.Errorf("image USER = %q; want a numeric non-root uid:gid", cfg.User)
	}
	if len(cfg.Entrypoint) != 1 || filepath.Base(cfg.Entrypoint[0]) != "coalesce" {
		t.Errorf("image ENTRYPOINT = %q; want [/.../coalesce]", cfg.Entrypoint)
	}
	if cfg.WorkingDir == "" || cfg.WorkingDir == "/" {
		t.Errorf("image WORKDIR = %q; want the directory holding models/ and configs/", cfg.WorkingDir)
	}
	for _, p := range []string{"8080/tcp", "9090/tcp"} {
		if _, ok := cfg.ExposedPorts[p]; !ok {
			t.Errorf("image EXPOSE = %v; want %s", cfg.ExposedPorts, p)
		}
	}
	if got := cfg.Labels["org.opencontainers.image.revision"]; got != commit {
		t.Errorf("label org.opencontainers.image.revision = %q; want %q", got, commit)
	}

	// Its root filesystem.
	ctr := run(buildah, "from", "--pull-never", image)
	t.Cleanup(func() { exec.Command(buildah, "rm", ctr).Run() })
	root := run(buildah, "mount", ctr)
	t.Cleanup(func() { exec.Command(buildah, "umount", ctr).Run() })
	bin := filepath.Join(root, cfg.Entrypoint[0])
	checkStatic(t, bin)
	for _, p := range []string{"bin/sh", "usr/bin/env"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("the image has /%s; want no shell or tools", p)
		}
	}
	for _, p := range []string{"models/digits-mlp/config.yaml", "configs/coalesce.yaml"} {
		if _, err := os.Stat(filepath.Join(root, cfg.WorkingDir, p)); err != nil {
			t.Errorf("the image lacks %s in its WORKDIR: %v", p, err)
		}
	}

	// Run it: entrypoint + command, as the image's user.
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	env := append(append([]string{}, cfg.Env...), "COALESCE_HTTP_ADDR="+httpAddr, "COALESCE_ADMIN_ADDR="+adminAddr)
	chrooted := func(args ...string) *exec.Cmd {
		cmd := exec.Command(cfg.Entrypoint[0], args...)
		cmd.Path = cfg.Entrypoint[0] // resolved inside the chroot, not on the host
		cmd.Dir = cfg.WorkingDir
		cmd.Env = env
		// What chroot --userspec=uid:gid does, plus the chdir into the
		// image's WORKDIR that chroot(1) cannot do: Go's fork chroots,
		// drops groups and ids, then changes directory.
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		return cmd
	}
	var logs bytes.Buffer
	srv := chrooted(cfg.Cmd...)
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatalf("start %v chrooted into the image: %v", cfg.Entrypoint, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Process.Kill()
			<-exited
		}
	})
	if err := waitReady(httpAddr, exited, 30*time.Second); err != nil {
		t.Fatalf("%v\nserver output:\n%s", err, logs.Bytes())
	}
	if got := procUID(t, srv.Process.Pid); got != strconv.Itoa(int(uid)) {
		t.Errorf("the server runs as uid %s; want %d", got, uid)
	}

	body, err := os.ReadFile("../models/digits-mlp/examples/predict.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+httpAddr+"/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(answer)) != `{"prediction":[2]}` {
		t.Errorf("POST /predict = %d %s; want 200 {\"prediction\":[2]}", resp.StatusCode, answer)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("POST /predict has no X-Request-Id")
	}

	if out, err := chrooted("version").Output(); err != nil || !bytes.Contains(out, []byte("v0.0.0-test (commit "+commit)) {
		t.Errorf("coalesce version = %q, %v; want version v0.0.0-test and commit %s stamped", out, err, commit)
	}
	hc := chrooted("healthcheck")
	if out, err := hc.CombinedOutput(); err != nil {
		t.Errorf("coalesce healthcheck in the image: %v\n%s", err, out)
	}

	metrics, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	if want := `commit="` + commit + `"`; !bytes.Contains(text, []byte(want)) {
		t.Errorf("/metrics has no coalesce_build_info with %s", want)
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("after SIGTERM the server exited with %v; want status 0\n%s", err, logs.Bytes())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not exit within 30s of SIGTERM\n%s", logs.Bytes())
	}

	size := run(buildah, "images", "--format", "{{.Size}}", image)
	t.Logf("image %s: %s; USER %s, ENTRYPOINT %v, CMD %v, WORKDIR %s", image, size, cfg.User, cfg.Entrypoint, cfg.Cmd, cfg.WorkingDir)
}

// numericUser parses a USER of the form uid[:gid].
func numericUser(u string) (uid, gid uint32, ok bool) {
	us, gs, hasGID := strings.Cut(u, ":")
	a, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return 0, 0, false
	}
	b := a
	if hasGID {
		if b, err = strconv.ParseUint(gs, 10, 32); err != nil {
			return 0, 0, false
		}
	}
	return uint32(a), uint32(b), true
}

// checkStatic checks that bin is a static executable built as the
// Dockerfile says: no program interpreter, CGO_ENABLED=0, -trimpath.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the image's binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter; want a static binary", bin)
		}
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("build info of %s: %v", bin, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("built with CGO_ENABLED=%q -trimpath=%q; want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitReady polls GET /v2/health/ready until 200, the process exits, or
// the timeout passes.
func waitReady(addr string, exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("the server exited before it was ready: %v", err)
		default:
		}
		if resp, err := c.Get("http://" + addr + "/v2/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer ready within %v", addr, timeout)
}

// procUID returns the real uid of process pid, from /proc.
func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}
