package lightgbm

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/coalesce-ml/coalesce/internal/approx"
)

var update = flag.Bool("update", false, "rewrite testdata/example.txt and testdata/example_expected.tsv")

const (
	exampleText     = "testdata/example.txt"
	exampleExpected = "testdata/example_expected.tsv"
)

// exampleModel is a realistic binary model: 20 trees of up to 15 leaves
// on 10 features, Column_3 categorical, thresholds as LightGBM picks them
// (bin bounds, ±kZeroThreshold around zero), learning rate 0.1 already in
// the leaf values; and 40 rows to score with it.
func exampleModel() (*tModel, [][]float32) {
	r := rand.New(rand.NewPCG(2024, 10))
	cats := make([]bool, 10)
	cats[3] = true
	c := &genConfig{leaves: 15, thresholds: []float64{-1.5, -0.7500000000000001, -zeroThreshold, zeroThreshold, 0.25, 0.5,
		1.0000000000000002, 2.5, 3.6500000000000004, 10.5, 120.5}, missing: []int{missingNone, missingNone, missingNone, missingNaN, missingZero},
		catFeature: cats, scale: 0.1}
	m := genModel(r, c, 10, 1, 1, 20, "binary sigmoid:1", false)
	// Mostly ordinary values, some missing, some on or next to
	// thresholds.
	edges := numPool(c.thresholds)
	rows := make([][]float32, 40)
	for i := range rows {
		rows[i] = make([]float32, 10)
		for j := range rows[i] {
			switch k := r.IntN(10); {
			case j == 3 && k == 0:
				rows[i][j] = nan32()
			case j == 3:
				rows[i][j] = float32([]int{0, 1, 2, 3, 5, 8, 33, 69}[r.IntN(8)])
			case k == 0:
				rows[i][j] = nan32()
			case k <= 2:
				rows[i][j] = edges[r.IntN(len(edges))]
			default:
				rows[i][j] = float32(math.Round((r.Float64()*14-2)*1000) / 1000)
			}
		}
	}
	return m, rows
}

// expectedTSV writes the reference's outputs for rows.
func expectedTSV(m *tModel, rows [][]float32) string {
	var b strings.Builder
	b.WriteString("# Expected outputs of example.txt, a LightGBM binary model (objective binary sigmoid:1) of 20 trees\n")
	b.WriteString("# on 10 features, Column_3 categorical. Computed in float64 from LightGBM's rules by the reference\n")
	b.WriteString("# evaluator in helpers_test.go, not by this package. One row per line, tab-separated: the 10 feature\n")
	b.WriteString("# values (float32; NaN is missing), the raw margin, the probability. Regenerate with\n")
	b.WriteString("# go test ./backends/cpu/forest/lightgbm/ -run TestExampleFile -args -update\n")
	for _, row := range rows {
		x := make([]float64, len(row))
		for i, v := range row {
			x[i] = float64(v)
			b.WriteString(strconv.FormatFloat(x[i], 'g', -1, 32))
			b.WriteByte('\t')
		}
		raw, out := refPredict(m, x)
		fmt.Fprintf(&b, "%s\t%s\n", strconv.FormatFloat(raw[0], 'g', 17, 64), strconv.FormatFloat(out[0], 'g', 17, 64))
	}
	return b.String()
}

// TestExampleFile keeps testdata in step with its generator and checks
// the reader against the expected outputs as another package would.
func TestExampleFile(t *testing.T) {
	m, rows := exampleModel()
	text, expected := m.text(), expectedTSV(m, rows)
	if *update {
		if err := os.WriteFile(exampleText, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exampleExpected, []byte(expected), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(exampleText)
	if err != nil {
		t.Fatal(err)
	}
	tsv, err := os.ReadFile(exampleExpected)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != text || string(tsv) != expected {
		t.Fatalf("%s or %s is stale; regenerate with -update", exampleText, exampleExpected)
	}
	model, err := Read(data)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(tsv))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 12 {
			t.Fatalf("line %q: %d columns; want 12", sc.Text(), len(cols))
		}
		x := make([]float32, 10)
		for i := range x {
			v, err := strconv.ParseFloat(cols[i], 32)
			if err != nil {
				t.Fatal(err)
			}
			x[i] = float32(v)
		}
		margin, _ := strconv.ParseFloat(cols[10], 64)
		prob, _ := strconv.ParseFloat(cols[11], 64)
		raw, _, out := predict(model, x)
		if raw[0] != float32(margin) || !approx.Equal(float64(out[0]), prob, 1e-6) {
			t.Errorf("row %v: margin %v, probability %v; want %v, %v", x, raw[0], out[0], margin, prob)
		}
		n++
	}
	if n != 40 {
		t.Errorf("%d rows; want 40", n)
	}
}
