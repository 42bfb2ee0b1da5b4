package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteJSON writes r to w as indented JSON, the format of results.json.
// It fails if a figure is NaN or infinite, which JSON cannot carry.
func WriteJSON(w io.Writer, r *Report) error {
	// encoding/json is fine here: one report per benchmark, not a hot path.
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: json: %w", err)
	}
	return nil
}

// Write creates dir if needed and writes into it report.md (which embeds
// the charts), results.json and the charts of WriteCharts, returning the
// paths written in that order. It reads r.Points and r.Ratios as they are:
// fill them with Summarize first. Existing files of the same names are
// replaced.
func Write(dir string, r *Report) (files []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	charts, err := WriteCharts(dir, r)
	if err != nil {
		return charts, err
	}
	embed := make(map[string]bool, len(charts))
	for _, c := range charts {
		embed[filepath.Base(c)] = true
	}

	var md, js bytes.Buffer
	if err := writeMarkdown(&md, r, embed); err != nil {
		return charts, err
	}
	if err := WriteJSON(&js, r); err != nil {
		return charts, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"report.md", md.Bytes()}, {"results.json", js.Bytes()}} {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, f.data, 0o644); err != nil {
			return append(files, charts...), fmt.Errorf("report: %w", err)
		}
		files = append(files, path)
	}
	return append(files, charts...), nil
}
