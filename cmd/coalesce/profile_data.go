package main

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/coalesce-ml/coalesce/backends"
	"github.com/coalesce-ml/coalesce/tensor"
)

// readData reads a profile's reference data: the model's inputs, in its
// input order (nil where the file has none), its outputs when the file
// holds them all (else nil), and the column names of a CSV header.
func readData(path string, meta *backends.Metadata, input string) (in, outs []*tensor.Tensor, header []string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	var rows [][]any // float64, or string for a non-number
	switch {
	case strings.HasSuffix(path, ".csv"):
		rows, header, err = csvRows(b)
	case strings.HasSuffix(path, ".npy"):
		rows, err = npyRows(b)
	case strings.HasSuffix(path, ".json"):
		if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
			return tensorsJSON(t, meta)
		}
		rows, err = jsonRows(b)
	default:
		err = errors.New("unknown format; want .csv, .json or .npy")
	}
	if err != nil {
		return nil, nil, nil, err
	}
	i := 0
	switch {
	case input != "":
		if i = meta.Input(input); i < 0 {
			return nil, nil, nil, fmt.Errorf("--input %s is not an input of the model", input)
		}
	case len(meta.Inputs) != 1:
		return nil, nil, nil, fmt.Errorf("the model has %d inputs; name the one the rows fill with --input, or use {\"inputs\": ...} JSON", len(meta.Inputs))
	}
	t, err := rowsTensor(rows, meta.Inputs[i])
	if err != nil {
		return nil, nil, nil, err
	}
	in = make([]*tensor.Tensor, len(meta.Inputs))
	in[i] = t
	return in, nil, header, nil
}

func parseCell(s string) any {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "nan") || strings.EqualFold(s, "null") {
		return math.NaN()
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return v
	}
	return s
}

// csvRows reads CSV; the first record is a header when one of its fields
// is not a number.
func csvRows(b []byte) ([][]any, []string, error) {
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		return nil, nil, err
	}
	var header []string
	if len(recs) > 0 && slices.ContainsFunc(recs[0], func(s string) bool { _, ok := parseCell(s).(string); return ok }) {
		header, recs = recs[0], recs[1:]
	}
	rows := make([][]any, len(recs))
	for i, rec := range recs {
		for _, s := range rec {
			rows[i] = append(rows[i], parseCell(s))
		}
	}
	return rows, header, nil
}

// jsonRows reads a JSON array of rows, each an array of numbers, strings
// or nulls (missing).
func jsonRows(b []byte) ([][]any, error) {
	var raw [][]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("want an array of rows (arrays): %w", err)
	}
	for _, row := range raw {
		for j, v := range row {
			switch v := v.(type) {
			case nil:
				row[j] = math.NaN()
			case float64, string:
			default:
				return nil, fmt.Errorf("value %v; want a number, string or null", v)
			}
		}
	}
	return raw, nil
}

var npyHeader = regexp.MustCompile(`'descr':\s*'([<|]?)([fiu])(\d)'.*'fortran_order':\s*False.*'shape':\s*\((\d+),\s*(\d*)\)`)

// npyRows reads a little-endian .npy array of one or two dimensions of
// float32/64 or int32/64, C order.
func npyRows(b []byte) ([][]any, error) {
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		return nil, errors.New("not a .npy file")
	}
	hl, off := int(binary.LittleEndian.Uint16(b[8:])), 10
	if b[6] >= 2 {
		if len(b) < 12 {
			return nil, errors.New("truncated .npy header")
		}
		hl, off = int(binary.LittleEndian.Uint32(b[8:])), 12
	}
	if off+hl > len(b) {
		return nil, errors.New("truncated .npy header")
	}
	m := npyHeader.FindStringSubmatch(string(b[off : off+hl]))
	if m == nil {
		return nil, fmt.Errorf(".npy header %q: want a C-order 1-D or 2-D little-endian float or int array", b[off:off+hl])
	}
	size, _ := strconv.Atoi(m[3])
	n, _ := strconv.Atoi(m[4])
	w := 1
	if m[5] != "" {
		w, _ = strconv.Atoi(m[5])
	}
	d := b[off+hl:]
	if (size != 4 && size != 8) || len(d) < n*w*size {
		return nil, fmt.Errorf(".npy: %d×%d elements of %d bytes need %d bytes, have %d", n, w, size, n*w*size, len(d))
	}
	at := func(i int) float64 {
		switch m[2] + m[3] {
		case "f4":
			return float64(math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:])))
		case "f8":
			return math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:]))
		case "i4":
			return float64(int32(binary.LittleEndian.Uint32(d[4*i:])))
		case "u4":
			return float64(binary.LittleEndian.Uint32(d[4*i:]))
		case "i8":
			return float64(int64(binary.LittleEndian.Uint64(d[8*i:])))
		}
		return float64(binary.LittleEndian.Uint64(d[8*i:]))
	}
	rows := make([][]any, n)
	for r := range rows {
		rows[r] = make([]any, w)
		for j := range w {
			rows[r][j] = at(r*w + j)
		}
	}
	return rows, nil
}

// rowsTensor makes the rows a tensor of spec's datatype, shape
// [rows, columns].
func rowsTensor(rows [][]any, spec backends.TensorSpec) (*tensor.Tensor, error) {
	if len(rows) == 0 {
		return nil, errors.New("no rows")
	}
	w := len(rows[0])
	shape := []int64{int64(len(rows)), int64(w)}
	if spec.DType == tensor.Bytes {
		var s []string
		for _, row := range rows {
			for _, v := range row {
				switch v := v.(type) {
				case string:
					s = append(s, v)
				case float64:
					s = append(s, strconv.FormatFloat(v, 'g', -1, 64))
				}
			}
		}
		if len(s) != len(rows)*w {
			return nil, fmt.Errorf("rows of unequal length; want %d values each", w)
		}
		return tensor.FromStrings(spec.Name, shape, s), nil
	}
	t := tensor.New(spec.Name, spec.DType, shape)
	for r, row := range rows {
		if len(row) != w {
			return nil, fmt.Errorf("row %d has %d values; want %d", r, len(row), w)
		}
		for j, v := range row {
			f, ok := v.(float64)
			if !ok {
				return nil, fmt.Errorf("row %d column %d: %q; input %s wants numbers", r, j, v, spec.Name)
			}
			t.SetFloat64(r*w+j, f)
		}
	}
	return t, nil
}

// tensorsJSON reads {"inputs": {name: {"datatype", "shape", "data"}},
// "outputs": {...}}, the layout of the shipped models' golden.json.
func tensorsJSON(b []byte, meta *backends.Metadata) (in, outs []*tensor.Tensor, header []string, err error) {
	type jt struct {
		Datatype string  `json:"datatype"`
		Shape    []int64 `json:"shape"`
		Data     []any   `json:"data"`
	}
	var doc struct {
		Inputs  map[string]jt `json:"inputs"`
		Outputs map[string]jt `json:"outputs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, nil, err
	}
	conv := func(specs []backends.TensorSpec, m map[string]jt, all bool) ([]*tensor.Tensor, error) {
		ts := make([]*tensor.Tensor, len(specs))
		for i, spec := range specs {
			j, ok := m[spec.Name]
			if !ok {
				if all {
					return nil, nil
				}
				continue
			}
			if n := tensor.NumElements(j.Shape); n < 0 || int(n) != len(j.Data) || len(j.Shape) == 0 {
				return nil, fmt.Errorf("%s: shape %v does not match %d values", spec.Name, j.Shape, len(j.Data))
			}
			w := len(j.Data) / max(int(j.Shape[0]), 1)
			rows := make([][]any, j.Shape[0])
			for r := range rows {
				rows[r] = j.Data[r*w : (r+1)*w]
				for k, v := range rows[r] {
					if v == nil {
						rows[r][k] = math.NaN()
					}
				}
			}
			t, err := rowsTensor(rows, spec)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", spec.Name, err)
			}
			ts[i] = t
		}
		return ts, nil
	}
	if in, err = conv(meta.Inputs, doc.Inputs, false); err != nil {
		return nil, nil, nil, err
	}
	if outs, err = conv(meta.Outputs, doc.Outputs, true); err != nil {
		return nil, nil, nil, err
	}
	return in, outs, nil, nil
}
