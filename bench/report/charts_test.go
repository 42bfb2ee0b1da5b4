package report

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// checkPNG fails t unless path is a PNG of at least 400×300 pixels with
// more than a few colours (axes, text and lines were drawn).
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() < 400 || b.Dy() < 300 {
		t.Errorf("%s: %d×%d pixels; want at least 400×300", path, b.Dx(), b.Dy())
	}
	if n := colours(img); n < 8 {
		t.Errorf("%s: %d colours; want a drawn chart", path, n)
	}
}

// colours counts the distinct colours of img, up to 1000.
func colours(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y && len(seen) < 1000; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
		}
	}
	return len(seen)
}

func TestWriteCharts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	paths, err := WriteCharts(dir, fixtureReport())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, sc := range fixtureScenarios {
		for _, mode := range fixtureModes {
			want = append(want,
				filepath.Join(dir, "throughput_latency-"+sc+"-"+mode+".png"),
				filepath.Join(dir, "latency_percentiles-"+sc+"-"+mode+".png"))
		}
	}
	if !slices.Equal(paths, want) {
		t.Fatalf("WriteCharts = %v;\nwant %v", paths, want)
	}
	for _, p := range paths {
		checkPNG(t, p)
	}
}

// TestWriteChartsEdges draws reports that stress the axes: no answers at
// all (log scale impossible), one point, equal values, targets that share
// no level, names unsafe in a path.
func TestWriteChartsEdges(t *testing.T) {
	pt := func(target string, level, thr, p99 float64) Point {
		return Point{Target: target, Scenario: "s", Mode: "closed", Level: level, Reps: 1, Throughput: thr,
			Latency: Latency{P50: p99 / 2, P90: p99, P99: p99, P999: p99, Max: p99}}
	}
	tests := []struct {
		name   string
		points []Point
		files  []string
	}{
		{"no answers", []Point{pt("a", 1, 0, 0), pt("b", 1, 0, 0)}, nil},
		{"one point", []Point{pt("a", 1, 100, 500)}, nil},
		{"equal values", []Point{pt("a", 1, 100, 500), pt("b", 1, 100, 500)}, nil},
		{"some zero latencies", []Point{pt("a", 1, 100, 0), pt("a", 2, 200, 50000), pt("b", 1, 100, 10)}, nil},
		{"no common level", []Point{pt("a", 1, 100, 500), pt("b", 2, 50, 90000), pt("b", 4, 60, 99000)}, nil},
		{"unsafe names", []Point{{Target: "a", Scenario: "../x y", Mode: "open/1", Level: 1, Throughput: 1,
			Latency: Latency{P50: 1, P90: 2, P99: 3, P999: 4, Max: 5}}},
			[]string{"throughput_latency-.._x_y-open_1.png", "latency_percentiles-.._x_y-open_1.png"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			paths, err := WriteCharts(dir, &Report{Points: tt.points})
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != 2 {
				t.Fatalf("WriteCharts wrote %v; want 2 files", paths)
			}
			for i, p := range paths {
				if filepath.Dir(p) != dir {
					t.Errorf("%s is outside %s", p, dir)
				}
				if tt.files != nil && filepath.Base(p) != tt.files[i] {
					t.Errorf("file %d = %s; want %s", i, filepath.Base(p), tt.files[i])
				}
				checkPNG(t, p)
			}
		})
	}
}

func TestWriteChartsEmpty(t *testing.T) {
	paths, err := WriteCharts(t.TempDir(), &Report{})
	if err != nil || len(paths) != 0 {
		t.Errorf("WriteCharts(empty) = %v, %v; want no file, no error", paths, err)
	}
}

func TestLogTicks(t *testing.T) {
	tests := []struct {
		name       string
		lo, hi     float64
		wantLabels []string
	}{
		{"decades", 0.3, 120, []string{"0.5", "1", "2", "5", "10", "20", "50", "100"}},
		{"within a decade", 0.25, 0.45, []string{"0.3", "0.4"}},
		{"1-2-5 marks too few", 0.15, 0.55, []string{"0.2", "0.3", "0.4", "0.5"}},
		{"wide", 0.05, 2000, []string{"0.1", "1", "10", "100", "1,000"}},
		{"one 1-2-5 mark", 1.5, 4.5, []string{"2", "3", "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var labels []string
			for _, tk := range (logTicks{}).Ticks(tt.lo, tt.hi) {
				if tk.Label != "" {
					labels = append(labels, tk.Label)
				}
				if tk.Value < tt.lo || tk.Value > tt.hi {
					t.Errorf("tick %v outside [%v, %v]", tk.Value, tt.lo, tt.hi)
				}
			}
			if !slices.Equal(labels, tt.wantLabels) {
				t.Errorf("labels = %v; want %v", labels, tt.wantLabels)
			}
		})
	}
	// Fewer than two multiples in range: linear ticks, still labelled.
	var labelled int
	for _, tk := range (logTicks{}).Ticks(0.41, 0.45) {
		if tk.Label != "" {
			labelled++
		}
	}
	if labelled < 2 {
		t.Errorf("Ticks(0.41, 0.45): %d labels; want at least 2", labelled)
	}
}
