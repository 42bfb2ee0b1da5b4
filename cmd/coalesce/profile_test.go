package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/backends/cpu"
	"github.com/coalesce-ml/coalesce/drift"
)

// TestShippedProfilesAreReproducible: each shipped model's profile.json
// is what `coalesce profile --data golden.json` writes today, and fits
// the model (drift.New accepts it).
func TestShippedProfilesAreReproducible(t *testing.T) {
	reg, err := backends.LoadRepository("../../models", cpu.Loaders(cpu.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range reg.All() {
		t.Run(m.Name, func(t *testing.T) {
			dir := filepath.Join("../../models", m.Name)
			want, err := os.ReadFile(filepath.Join(dir, "profile.json"))
			if err != nil {
				t.Fatalf("no profile: %v (make profiles)", err)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{"profile", "--repository", "../../models", "--model", m.Name, "--data", filepath.Join(dir, "golden.json"), "--out", "-"}, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("coalesce profile = %d: %s", code, stderr.String())
			}
			if stdout.String() != string(want) {
				t.Errorf("%s/profile.json differs from what coalesce profile writes; run make profiles", dir)
			}
			p, err := drift.ParseProfile(want)
			if err != nil {
				t.Fatal(err)
			}
			h, err := drift.New(drift.Config{SampleRate: 1}, p, m, metrics.NewSet(), true)
			if err != nil {
				t.Fatalf("drift.New: %v", err)
			}
			h.Close()
		})
	}
}

// TestProfileFormats: CSV with a header, JSON rows and .npy give the same
// input features; without outputs in the file the model is run for them.
func TestProfileFormats(t *testing.T) {
	dir := t.TempDir()
	var g struct {
		Inputs map[string]struct {
			Data []float64 `json:"data"`
		} `json:"inputs"`
	}
	b, err := os.ReadFile("../../models/iris-logreg/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	x := g.Inputs["input"].Data
	var csv, rows strings.Builder
	csv.WriteString("sepal_length,sepal_width,petal_length,petal_width\n")
	rows.WriteString("[")
	npy := []byte("\x93NUMPY\x01\x00")
	hdr := "{'descr': '<f8', 'fortran_order': False, 'shape': (32, 4), }"
	hdr += strings.Repeat(" ", 63-(10+len(hdr))%64) + "\n"
	npy = binary.LittleEndian.AppendUint16(npy, uint16(len(hdr)))
	npy = append(npy, hdr...)
	for r := range 32 {
		row := x[r*4 : r*4+4]
		js, _ := json.Marshal(row)
		if r > 0 {
			rows.WriteString(",")
		}
		rows.Write(js)
		csv.WriteString(strings.Trim(string(js), "[]") + "\n")
		for _, v := range row {
			npy = binary.LittleEndian.AppendUint64(npy, math.Float64bits(v))
		}
	}
	rows.WriteString("]")
	files := map[string]string{"x.csv": csv.String(), "x.json": rows.String(), "x.npy": string(npy)}
	var got []*drift.Profile
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := run([]string{"profile", "--repository", "../../models", "--model", "iris-logreg", "--data", path, "--out", "-"}, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: coalesce profile = %d: %s", name, code, stderr.String())
		}
		p, err := drift.ParseProfile(stdout.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "x.csv" && p.Features[0].Name != "sepal_length" {
			t.Errorf("x.csv: first feature %q; want the header's sepal_length", p.Features[0].Name)
		}
		got = append(got, p)
	}
	golden, err := drift.LoadProfile("../../models/iris-logreg/profile.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got {
		for i, f := range p.Features {
			if g := golden.Features[i]; !equalFloats(f.Edges, g.Edges) || !equalFloats(f.Ref, g.Ref) {
				t.Errorf("feature %d: %v %v; want the golden profile's %v %v", i, f.Edges, f.Ref, g.Edges, g.Ref)
			}
		}
		// The outputs came from running the model: the golden rows'
		// labels, so the same shares.
		if len(p.Outputs) != len(golden.Outputs) || p.Prediction != "label" {
			t.Fatalf("outputs %d, prediction %q; want %d, label", len(p.Outputs), p.Prediction, len(golden.Outputs))
		}
		for i, f := range p.Outputs {
			if f.Name == "label" && !equalFloats(f.Ref, golden.Outputs[i].Ref) {
				t.Errorf("label shares %v; want %v", f.Ref, golden.Outputs[i].Ref)
			}
		}
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-9 {
			return false
		}
	}
	return true
}

func TestProfileErrors(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"profile", "--repository", "../../models"}, args...), nil, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), want) {
			t.Errorf("coalesce profile %v = %d %q; want an error containing %q", args, code, stderr.String(), want)
		}
	}
	f("want --model and --data", "--model", "iris-logreg")
	f("no such file", "--model", "iris-logreg", "--data", "nope.csv")
	f("unknown format", "--model", "iris-logreg", "--data", "../../models/iris-logreg/config.yaml")
	f("not found", "--model", "nope", "--data", "../../models/iris-logreg/golden.json")
}
