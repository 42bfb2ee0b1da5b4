package report

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWriteJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    *Report
	}{
		{"full", fixtureReport()},
		{"empty", &Report{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteJSON(&b, tt.r); err != nil {
				t.Fatal(err)
			}
			var got Report
			if err := json.Unmarshal(b.Bytes(), &got); err != nil {
				t.Fatalf("decoding %s: %v", b.String(), err)
			}
			if !got.Header.Date.Equal(tt.r.Header.Date) {
				t.Errorf("date = %v; want %v", got.Header.Date, tt.r.Header.Date)
			}
			want := *tt.r
			// Compare instants with Equal above; DeepEqual would also
			// compare the monotonic reading and the *Location.
			got.Header.Date = want.Header.Date
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip changed the report:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestWriteJSONFormat(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, fixtureReport()); err != nil {
		t.Fatal(err)
	}
	js := b.String()
	for _, want := range []string{"\n  \"header\": {\n", `"p99_us":`, `"server_cpu_per_request_us": -1`, `"ratio": 0.95`} {
		if !strings.Contains(js, want) {
			t.Errorf("results.json lacks %q", want)
		}
	}
}

func TestWriteJSONNaN(t *testing.T) {
	r := &Report{Runs: []Run{{Throughput: math.NaN()}}}
	if err := WriteJSON(&bytes.Buffer{}, r); err == nil {
		t.Error("WriteJSON(NaN) = nil; want an error: JSON has no NaN")
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "results", "run1") // Write creates it
	r := fixtureReport()
	files, err := Write(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2+8 {
		t.Fatalf("Write = %v; want report.md, results.json and 8 charts", files)
	}
	if filepath.Base(files[0]) != "report.md" || filepath.Base(files[1]) != "results.json" {
		t.Errorf("Write = %v; want report.md, results.json first", files)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v, %v", f, st, err)
		}
	}
	md, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range files[2:] {
		name := filepath.Base(c)
		if !strings.Contains(string(md), "![") || !strings.Contains(string(md), "("+name+")") {
			t.Errorf("report.md does not embed %s", name)
		}
	}
	js, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Runs) != len(r.Runs) || len(got.Points) != len(r.Points) || len(got.Ratios) != len(r.Ratios) {
		t.Errorf("results.json: %d runs, %d points, %d ratios; want %d, %d, %d",
			len(got.Runs), len(got.Points), len(got.Ratios), len(r.Runs), len(r.Points), len(r.Ratios))
	}
}
