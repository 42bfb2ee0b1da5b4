package targets

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// pythonExe is Debian's interpreter, where python3-flask,
	// python3-sklearn and gunicorn install; a python3 earlier on PATH
	// (pyenv, a virtualenv) usually lacks them.
	pythonExe   = "/usr/bin/python3"
	installHint = "apt-get install -y python3-flask python3-sklearn gunicorn"
	// trainTimeout bounds make_models.py (about 5s on a 2-core machine).
	trainTimeout = 5 * time.Minute
	checkTimeout = time.Minute // the import check; sklearn takes ~1s to import
)

// peerModels are the pickles make_models.py writes, by name.
var peerModels = [...]string{"logreg_digits", "rf_cancer", "mlp_digits"}

// SkippedError says that a target cannot run on this machine and why, so
// that the caller can report what it skipped and carry on.
type SkippedError struct {
	Reason string // a sentence naming what is missing and how to install it
}

// Error returns "skipped: " and the reason.
func (e *SkippedError) Error() string { return "skipped: " + e.Reason }

// Python runs the seed's Flask example (the peers' flask_app.py) from a
// writable copy of the peers folder. PreparePython returns it. Its
// methods are safe for concurrent use; its fields must not change while a
// server starts.
type Python struct {
	Exe      string            // the interpreter, /usr/bin/python3
	PeersDir string            // the writable copy of the peers folder; the servers' working directory
	Models   map[string]string // model name ("mlp_digits") -> absolute path of its .pkl
	// Bodies maps a data set ("digits", "cancer") to the absolute path of
	// a real request body for it ({"features": [...]}).
	Bodies map[string]string
	// Env is added to the environment of the servers started afterwards,
	// e.g. "OPENBLAS_NUM_THREADS=1". Nil leaves the environment as
	// inherited, so the BLAS library uses its default thread count.
	Env []string
}

// PreparePython checks that /usr/bin/python3 can import flask, sklearn,
// joblib and gunicorn, copies the peers folder sharedPeers (which may be
// read-only) to workDir/peers, and trains the peer models there with
// make_models.py unless all their .pkl files already exist (training takes
// ~5s; later calls with the same workDir reuse the models). When the
// peers folder, the interpreter or a module is missing it returns a
// *SkippedError.
func PreparePython(ctx context.Context, sharedPeers, workDir string) (*Python, error) {
	for _, f := range [...]string{"flask_app.py", "make_models.py"} {
		if _, err := os.Stat(filepath.Join(sharedPeers, f)); err != nil {
			return nil, &SkippedError{Reason: fmt.Sprintf("peers folder %s has no %s (the seed's Flask example lives in ../shared/peers beside the repository)", sharedPeers, f)}
		}
	}
	if err := checkPython(ctx, pythonExe); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Join(workDir, "peers"))
	if err != nil {
		return nil, err
	}
	if err := copyTree(sharedPeers, dir); err != nil {
		return nil, fmt.Errorf("copy peers: %w", err)
	}
	p := &Python{Exe: pythonExe, PeersDir: dir, Models: map[string]string{}, Bodies: map[string]string{}}
	trained := true
	for _, m := range peerModels {
		p.Models[m] = filepath.Join(dir, "models", m+".pkl")
		if _, err := os.Stat(p.Models[m]); err != nil {
			trained = false
		}
	}
	if !trained {
		if err := p.train(ctx); err != nil {
			return nil, err
		}
	}
	for _, b := range [...]string{"digits", "cancer"} {
		p.Bodies[b] = filepath.Join(dir, "bodies", b+".json")
		if _, err := os.Stat(p.Bodies[b]); err != nil {
			return nil, fmt.Errorf("peers: request body: %w", err)
		}
	}
	return p, nil
}

// checkPython returns a *SkippedError unless exe imports every module the
// Python targets need.
func checkPython(ctx context.Context, exe string) error {
	if _, err := os.Stat(exe); err != nil {
		return &SkippedError{Reason: exe + " not found (apt-get install -y python3 python3-flask python3-sklearn gunicorn)"}
	}
	const script = `import importlib
missing = []
for m in ("flask", "sklearn", "joblib", "gunicorn"):
    try:
        importlib.import_module(m)
    except Exception:
        missing.append(m)
print(" ".join(missing))`
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, exe, "-c", script).Output()
	if err != nil {
		return fmt.Errorf("%s: import check: %w", exe, err)
	}
	if missing := strings.Fields(string(out)); len(missing) > 0 {
		return &SkippedError{Reason: fmt.Sprintf("%s cannot import %s: Debian's python3-flask, python3-sklearn and gunicorn are not all installed (%s)",
			exe, strings.Join(missing, ", "), installHint)}
	}
	return nil
}

// train runs make_models.py into a scratch folder and renames its output
// into place, so that an interrupted run never leaves a truncated .pkl for
// the cache check to accept.
func (p *Python) train(ctx context.Context) error {
	tmp, err := os.MkdirTemp(p.PeersDir, ".train-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(ctx, trainTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Exe, filepath.Join(p.PeersDir, "make_models.py"), tmp)
	cmd.Dir = p.PeersDir
	cmd.Env = append(os.Environ(), p.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make_models.py: %w\n%s", err, out)
	}
	for _, sub := range [...]string{"models", "bodies"} {
		if err := os.MkdirAll(filepath.Join(p.PeersDir, sub), 0o755); err != nil {
			return err
		}
		ents, err := os.ReadDir(filepath.Join(tmp, sub))
		if err != nil {
			return fmt.Errorf("make_models.py output: %w", err)
		}
		for _, e := range ents {
			if err := os.Rename(filepath.Join(tmp, sub, e.Name()), filepath.Join(p.PeersDir, sub, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Body returns the request body file for model: the data set is the part
// of the model name after its last '_' ("mlp_digits" -> bodies/digits.json).
func (p *Python) Body(model string) (string, error) {
	i := strings.LastIndexByte(model, '_')
	if b, ok := p.Bodies[model[i+1:]]; ok {
		return b, nil
	}
	return "", fmt.Errorf("no request body for model %q; want a name ending in _digits or _cancer", model)
}

// StartFlask runs the seed's Flask app, peers/flask_app.py, with Flask's
// built-in (threaded, werkzeug) server and model (a key of Models, e.g.
// "mlp_digits"). It returns once POST /predict with the model's body
// answers 200, bounded by ctx and by 60s. Werkzeug closes the connection
// after every answer ("Connection: close"), so clients reconnect per
// request.
func (p *Python) StartFlask(ctx context.Context, model string) (*Target, error) {
	return p.start(ctx, "flask", model, func(addr string) []string {
		return []string{filepath.Join(p.PeersDir, "flask_app.py")}
	})
}

// StartGunicorn runs the same app under gunicorn with workers sync worker
// processes (gunicorn -w workers -k sync -b 127.0.0.1:PORT flask_app:app,
// in PeersDir). The Target's PID is gunicorn's master; the workers are its
// children, counted by CPUSeconds and stopped by Stop. Sync workers close
// the connection after every answer, like werkzeug.
func (p *Python) StartGunicorn(ctx context.Context, model string, workers int) (*Target, error) {
	if workers < 1 {
		return nil, fmt.Errorf("gunicorn: %d workers; want at least 1", workers)
	}
	return p.start(ctx, "gunicorn", model, func(addr string) []string {
		return []string{"-m", "gunicorn", "--workers", strconv.Itoa(workers), "--worker-class", "sync",
			"--bind", addr, "flask_app:app"}
	})
}

// start runs p.Exe with the arguments args returns for the listen address,
// the model in MODEL_PATH and the port in PORT.
func (p *Python) start(ctx context.Context, name, model string, args func(addr string) []string) (*Target, error) {
	pkl, ok := p.Models[model]
	if !ok {
		return nil, fmt.Errorf("%s: unknown model %q; want one of %v", name, model, peerModels)
	}
	bodyPath, err := p.Body(model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	body, err := os.ReadFile(bodyPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return startRetrying(ctx, func() (spec, error) {
		addrs, err := freeAddrs(1)
		if err != nil {
			return spec{}, err
		}
		_, port, _ := strings.Cut(addrs[0], ":")
		env := append(os.Environ(), p.Env...)
		// Unbuffered stdout: the startup lines reach Log() at once.
		env = append(env, "MODEL_PATH="+pkl, "PORT="+port, "PYTHONUNBUFFERED=1")
		return spec{
			name:  name,
			path:  p.Exe,
			args:  args(addrs[0]),
			dir:   p.PeersDir,
			env:   env,
			addr:  addrs[0],
			ready: probe(http.MethodPost, "http://"+addrs[0]+"/predict", "application/json", body),
		}, nil
	})
}

// copyTree copies the regular files under src to dst, creating folders as
// needed and making every copy writable by its owner. It skips results/,
// where run_baseline.sh writes its outputs.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir() && rel == "results":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm()|0o600)
	})
}
