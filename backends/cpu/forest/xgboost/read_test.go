package xgboost

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"
)

// tiny is a minimal model in XGBoost 1.7's layout: x0 < 0.5 (NaN too)
// scores -1, else 1, from base 0.5.
const tiny = `{"learner":{"attributes":{},"feature_names":[],"feature_types":[],` +
	`"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"1","size_leaf_vector":"0"},` +
	`"tree_info":[0],"trees":[{"base_weights":[0,-1,1],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],` +
	`"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],"loss_changes":[1,0,0],"parents":[2147483647,0,0],` +
	`"right_children":[2,-1,-1],"split_conditions":[5E-1,-1E0,1E0],"split_indices":[0,0,0],"split_type":[0,0,0],` +
	`"sum_hessian":[3,1,2],"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"0"}}]},"name":"gbtree"},` +
	`"learner_model_param":{"base_score":"5E-1","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"},` +
	`"objective":{"name":"reg:squarederror","reg_loss_param":{"scale_pos_weight":"1"}}},"version":[1,7,4]}`

// predictTiny checks that m scores rows as tiny does.
func predictTiny(t *testing.T, data string) {
	t.Helper()
	m, err := Read([]byte(data))
	if err != nil {
		t.Fatalf("Read = %v", err)
	}
	nan := float32(math.NaN())
	x := []float32{0, 9, 0.5, 9, nan, 9, 0.49999997, nan}
	out := make([]float32, 4)
	m.Forest.Predict(x, 4, out)
	want := []float32{-0.5, 1.5, -0.5, -0.5}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("Predict row %d = %v; want %v (all: %v)", i, out[i], want[i], out)
		}
	}
}

func TestReadTiny(t *testing.T) { predictTiny(t, tiny) }

// TestReadVariants checks inputs that differ from what 1.7 writes but
// mean the same model.
func TestReadVariants(t *testing.T) {
	f := func(name string, edit func(string) string) {
		t.Helper()
		t.Run(name, func(t *testing.T) { predictTiny(t, edit(tiny)) })
	}
	f("booleans (XGBoost < 1.6)", func(s string) string {
		return strings.Replace(s, `"default_left":[1,0,0]`, `"default_left":[true,false,false]`, 1)
	})
	f("no split_type and categories (XGBoost < 1.5)", func(s string) string {
		s = strings.Replace(s, `"split_type":[0,0,0],`, ``, 1)
		return strings.Replace(s, `"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],`, ``, 1)
	})
	f("whitespace", func(s string) string {
		r := strings.NewReplacer(",", " ,\n\t", `":`, "\"\r\n: ", "[", "[ ", "{", "{ ", "]", " ]", "}", " }")
		return " \n" + r.Replace(s) + "\n "
	})
	f("escaped key", func(s string) string {
		return strings.Replace(s, `"left_children"`, `"left\u005fchildren"`, 1)
	})
	f("numbers as params", func(s string) string {
		return strings.Replace(s, `"num_feature":"2"`, `"num_feature":2`, 1)
	})
	f("unknown keys", func(s string) string {
		return strings.Replace(s, `"attributes":{}`, `"attributes":{"a":[1,{"b":null,"c":true,"d":"\"\\"}],"x":-1.5e+3}`, 1)
	})
	f("no id", func(s string) string { return strings.Replace(s, `"id":0,`, ``, 1) })
}

func TestReadTreeOrderByID(t *testing.T) {
	// Two trees written in reverse order of their ids: tree 1 (first in
	// the file) scores class 1 of a 2-class model.
	s := strings.Replace(tiny, `"objective":{"name":"reg:squarederror"`, `"objective":{"name":"multi:softprob"`, 1)
	s = strings.Replace(s, `"num_class":"0"`, `"num_class":"2"`, 1)
	s = strings.Replace(s, `"num_trees":"1"`, `"num_trees":"2"`, 1)
	s = strings.Replace(s, `"tree_info":[0]`, `"tree_info":[0,1]`, 1)
	i := strings.Index(s, `"trees":[`) + len(`"trees":[`)
	j := strings.Index(s, `]},"name":"gbtree"`)
	t0 := s[i:j]
	t1 := strings.Replace(strings.Replace(t0, `"id":0`, `"id":1`, 1), `-1E0,1E0`, `-2E0,2E0`, 1)
	s = s[:i] + t1 + "," + t0 + s[j:]
	m, err := Read([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 2)
	m.Forest.Predict([]float32{1, 0}, 1, out)
	if out[0] != 1.5 || out[1] != 2.5 {
		t.Errorf("Predict = %v; want [1.5 2.5]", out)
	}
}

// TestReadRejects checks that broken and unsupported models are errors
// wrapping the right sentinel.
func TestReadRejects(t *testing.T) {
	f := func(name string, want error, old, new string) {
		t.Helper()
		if !strings.Contains(tiny, old) {
			t.Fatalf("%s: %q not in tiny", name, old)
		}
		data := strings.Replace(tiny, old, new, 1)
		_, err := Read([]byte(data))
		if !errors.Is(err, want) {
			t.Errorf("%s: Read = %v; want %v", name, err, want)
		}
		t.Logf("%s: %v", name, err)
	}
	inv, uns := ErrInvalid, ErrUnsupported

	// Syntax.
	f("trailing data", inv, `[1,7,4]}`, `[1,7,4]}x`)
	f("two documents", inv, `[1,7,4]}`, `[1,7,4]}{}`)
	f("missing comma", inv, `[1,-1,-1]`, `[1 -1,-1]`)
	f("trailing comma", inv, `[1,-1,-1]`, `[1,-1,-1,]`)
	f("bad literal", inv, `"attributes":{}`, `"attributes":nul`)
	f("bad escape", inv, `"attributes":{}`, `"attributes":"\q"`)
	f("control character", inv, `"attributes":{}`, "\"attributes\":\"a\x01\"")
	f("bad number", inv, `"attributes":{}`, `"attributes":1.e5`)
	f("deep nesting", inv, `"attributes":{}`, `"attributes":`+strings.Repeat("[", 100)+strings.Repeat("]", 100))
	f("duplicate key", inv, `"id":0,`, `"id":0,"id":0,`)
	f("duplicate trees", inv, `"tree_info":[0],`, `"tree_info":[0],"trees":[],`)
	f("not an object", inv, `{"learner":`, `["learner",`)
	f("feature name not UTF-8", inv, `"feature_names":[]`, "\"feature_names\":[\"\xff\",\"b\"]")

	// Wrong types.
	f("children as string", inv, `"left_children":[1,-1,-1]`, `"left_children":"1,-1,-1"`)
	f("child as float", inv, `"left_children":[1,-1,-1]`, `"left_children":[1.0,-1,-1]`)
	f("child as exponent", inv, `"left_children":[1,-1,-1]`, `"left_children":[1e0,-1,-1]`)
	f("condition as string", inv, `[5E-1,-1E0,1E0]`, `["5E-1",-1E0,1E0]`)
	f("default_left 2", inv, `"default_left":[1,0,0]`, `"default_left":[2,0,0]`)
	f("split_type 2", inv, `"split_type":[0,0,0]`, `"split_type":[2,0,0]`)
	f("tree_info object", inv, `"tree_info":[0]`, `"tree_info":{"0":0}`)
	f("trees object", inv, `"trees":[{`, `"trees":{"t":{`)
	f("num_feature text", inv, `"num_feature":"2","num_target"`, `"num_feature":"two","num_target"`)
	f("num_feature negative", inv, `"num_feature":"2","num_target"`, `"num_feature":"-2","num_target"`)
	f("objective number", inv, `{"name":"reg:squarederror"`, `{"name":7`)
	f("version strings", inv, `[1,7,4]`, `["1","7","4"]`)
	f("huge integer", inv, `"left_children":[1,-1,-1]`, `"left_children":[10000000000000000000000,-1,-1]`)
	f("index above int32", inv, `"split_indices":[0,0,0]`, `"split_indices":[4294967295,0,0]`)

	// Lengths that disagree.
	f("short right_children", inv, `"right_children":[2,-1,-1]`, `"right_children":[2,-1]`)
	f("long split_conditions", inv, `[5E-1,-1E0,1E0]`, `[5E-1,-1E0,1E0,0]`)
	f("short default_left", inv, `"default_left":[1,0,0]`, `"default_left":[1,0]`)
	f("short split_type", inv, `"split_type":[0,0,0]`, `"split_type":[0]`)
	f("no split_indices", inv, `"split_indices":[0,0,0],`, ``)
	f("no nodes", inv, `"left_children":[1,-1,-1]`, `"left_children":[]`)
	f("num_nodes", inv, `"num_nodes":"3"`, `"num_nodes":"4"`)
	f("num_trees", inv, `"num_trees":"1"`, `"num_trees":"2"`)
	f("tree_info", inv, `"tree_info":[0]`, `"tree_info":[0,0]`)
	f("no tree_info", inv, `"tree_info":[0],`, ``)
	f("feature_names", inv, `"feature_names":[]`, `"feature_names":["a"]`)
	f("categories arrays", inv, `"categories_segments":[]`, `"categories_segments":[0]`)
	f("no trees", inv, `"trees":[{`, `"trees":[],"x":[{`)

	// Structure.
	f("child out of range", inv, `"left_children":[1,-1,-1]`, `"left_children":[5,-1,-1]`)
	f("child negative", inv, `"right_children":[2,-1,-1]`, `"right_children":[-2,-1,-1]`)
	f("branch without right child", inv, `"right_children":[2,-1,-1]`, `"right_children":[-1,-1,-1]`)
	f("self loop", inv, `"left_children":[1,-1,-1]`, `"left_children":[0,-1,-1]`)
	f("cycle", inv, `"left_children":[1,-1,-1],"loss_changes":[1,0,0],"parents":[2147483647,0,0],"right_children":[2,-1,-1]`,
		`"left_children":[1,0,-1],"loss_changes":[1,0,0],"parents":[2147483647,0,0],"right_children":[2,2,-1]`)
	f("shared child", inv, `"right_children":[2,-1,-1]`, `"right_children":[1,-1,-1]`)
	f("feature out of range", inv, `"split_indices":[0,0,0]`, `"split_indices":[2,0,0]`)
	f("tree_info out of range", inv, `"tree_info":[0]`, `"tree_info":[1]`)
	f("tree_info negative", inv, `"tree_info":[0]`, `"tree_info":[-1]`)
	f("id out of range", inv, `"id":0`, `"id":1`)

	// Non-finite and out-of-range values.
	f("NaN split", inv, `[5E-1,-1E0,1E0]`, `[NaN,-1E0,1E0]`)
	f("infinite split", inv, `[5E-1,-1E0,1E0]`, `[Infinity,-1E0,1E0]`)
	f("NaN leaf", inv, `[5E-1,-1E0,1E0]`, `[5E-1,NaN,1E0]`)
	f("infinite leaf", inv, `[5E-1,-1E0,1E0]`, `[5E-1,-Infinity,1E0]`)
	f("leaf beyond float32", inv, `[5E-1,-1E0,1E0]`, `[5E-1,-1E39,1E0]`)
	f("split beyond float32", inv, `[5E-1,-1E0,1E0]`, `[1E300,-1E0,1E0]`)
	f("NaN base_score", inv, `"base_score":"5E-1"`, `"base_score":"NaN"`)
	f("huge base_score", inv, `"base_score":"5E-1"`, `"base_score":"1E39"`)
	f("text base_score", inv, `"base_score":"5E-1"`, `"base_score":"half"`)

	// Parameters.
	f("no num_feature", inv, `"num_feature":"2","num_target"`, `"num_target"`)
	f("num_feature 0", inv, `"num_feature":"2","num_target"`, `"num_feature":"0","num_target"`)
	f("num_feature limit", uns, `"num_feature":"2","num_target"`, `"num_feature":"16777217","num_target"`)
	f("num_class limit", uns, `"num_class":"0"`, `"num_class":"65537"`)
	f("num_class for regression", inv, `"num_class":"0"`, `"num_class":"3"`)
	f("num_class 1 for softprob", inv, `{"name":"reg:squarederror"`, `{"name":"multi:softprob"`)
	f("no version", inv, `,"version":[1,7,4]`, ``)
	f("version 0.90", uns, `[1,7,4]`, `[0,90,0]`)
	f("vector leaves", uns, `"num_nodes":"3","size_leaf_vector":"0"`, `"num_nodes":"3","size_leaf_vector":"2"`)

	// Objectives and boosters.
	f("unknown objective", uns, `{"name":"reg:squarederror"`, `{"name":"reg:quantum"`)
	f("no objective", inv, `{"name":"reg:squarederror",`, `{`)
	f("binary:hinge", uns, `{"name":"reg:squarederror"`, `{"name":"binary:hinge"`)
	f("survival:aft", uns, `{"name":"reg:squarederror"`, `{"name":"survival:aft"`)
	f("unknown booster", uns, `"name":"gbtree"}`, `"name":"gbforest"}`)
	f("no booster name", inv, `},"name":"gbtree"}`, `}}`)
	f("dart without weight_drop", inv, `"name":"gbtree"}`, `"name":"dart"}`)
	f("gbtree with weight_drop", inv, `"name":"gbtree"}`, `"name":"gbtree","weight_drop":[1]}`)
	f("gbtree and model", inv, `"gradient_booster":{"model":`, `"gradient_booster":{"gbtree":{"model":{}},"model":`)

	// dart.
	g := func(name string, want error, old, new string) {
		t.Helper()
		data := strings.Replace(dart(tiny, "5E-1"), old, new, 1)
		if _, err := Read([]byte(data)); !errors.Is(err, want) {
			t.Errorf("%s: Read = %v; want %v", name, err, want)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	g("NaN weight_drop", inv, `"weight_drop":[5E-1]`, `"weight_drop":[NaN]`)
	g("short weight_drop", inv, `"weight_drop":[5E-1]`, `"weight_drop":[]`)
	g("no weight_drop", inv, `,"weight_drop":[5E-1]`, ``)
	g("dart of gblinear", inv, `"gbtree":{"name":"gbtree"`, `"gbtree":{"name":"gblinear"`)
}

// dart turns tiny into a dart booster with the given weight_drop.
func dart(s, weight string) string {
	s = strings.Replace(s, `"gradient_booster":{"model":`, `"gradient_booster":{"gbtree":{"name":"gbtree","model":`, 1)
	return strings.Replace(s, `]},"name":"gbtree"}`, `]}},"name":"dart","weight_drop":[`+weight+`]}`, 1)
}

func TestReadDart(t *testing.T) {
	m, err := Read([]byte(dart(tiny, "5E-1")))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 2)
	m.Forest.Predict([]float32{0, 0, 1, 0}, 2, out)
	if out[0] != 0 || out[1] != 1 {
		t.Errorf("Predict = %v; want [0 1] (leaves -1 and 1 halved, plus 0.5)", out)
	}
	// A weighted leaf beyond float32's range.
	s := strings.Replace(dart(tiny, "2E0"), `-1E0,1E0`, `-1E0,3E38`, 1)
	if _, err := Read([]byte(s)); !errors.Is(err, ErrInvalid) {
		t.Errorf("leaf 3E38 × weight 2: Read = %v; want ErrInvalid", err)
	}
}

// TestReadRejectsBaseScore checks ProbToMargin's domains.
func TestReadRejectsBaseScore(t *testing.T) {
	f := func(objective, baseScore string) {
		t.Helper()
		s := strings.Replace(tiny, `{"name":"reg:squarederror"`, `{"name":"`+objective+`"`, 1)
		s = strings.Replace(s, `"base_score":"5E-1"`, `"base_score":"`+baseScore+`"`, 1)
		if _, err := Read([]byte(s)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s base_score %s: Read = %v; want ErrInvalid", objective, baseScore, err)
		}
	}
	f("binary:logistic", "1E0")
	f("binary:logistic", "0E0")
	f("reg:logistic", "-5E-1")
	f("count:poisson", "0E0")
	f("reg:gamma", "-1E0")
}

// cat is tiny with a categorical root: categories 1 and 3 go right.
func cat(categories, nodes, segments, sizes string) string {
	s := strings.Replace(tiny, `"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[]`,
		`"categories":`+categories+`,"categories_nodes":`+nodes+`,"categories_segments":`+segments+`,"categories_sizes":`+sizes, 1)
	return strings.Replace(s, `"split_type":[0,0,0]`, `"split_type":[1,0,0]`, 1)
}

func TestReadCategorical(t *testing.T) {
	m, err := Read([]byte(cat("[1,3]", "[0]", "[0]", "[2]")))
	if err != nil {
		t.Fatal(err)
	}
	nan := float32(math.NaN())
	x := []float32{0, 1, 2, 3, 3.5, -1, 1e7, nan}
	want := []float32{-0.5, 1.5, -0.5, 1.5, 1.5, -0.5, -0.5, -0.5} // NaN: default_left
	out := make([]float32, len(x))
	xs := make([]float32, 2*len(x))
	for i, v := range x {
		xs[2*i] = v
	}
	m.Forest.Predict(xs, len(x), out)
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("x0=%v: %v; want %v", x[i], out[i], want[i])
		}
	}
	// A categorical split without categories sends every category left,
	// as in XGBoost.
	m, err = Read([]byte(cat("[]", "[]", "[]", "[]")))
	if err != nil {
		t.Fatal(err)
	}
	m.Forest.Predict(xs, len(x), out)
	for i, v := range out {
		if v != -0.5 {
			t.Errorf("empty set: x0=%v: %v; want -0.5", x[i], v)
		}
	}

	f := func(name string, want error, categories, nodes, segments, sizes string) {
		t.Helper()
		_, err := Read([]byte(cat(categories, nodes, segments, sizes)))
		if !errors.Is(err, want) {
			t.Errorf("%s: Read = %v; want %v", name, err, want)
		}
		t.Logf("%s: %v", name, err)
	}
	f("node out of range", ErrInvalid, "[1]", "[3]", "[0]", "[1]")
	f("leaf node", ErrInvalid, "[1]", "[1]", "[0]", "[1]")
	f("node twice", ErrInvalid, "[1,2]", "[0,0]", "[0,1]", "[1,1]")
	f("segment out of range", ErrInvalid, "[1]", "[0]", "[1]", "[1]")
	f("size too large", ErrInvalid, "[1]", "[0]", "[0]", "[2]")
	f("size 0", ErrInvalid, "[1]", "[0]", "[0]", "[0]")
	f("negative segment", ErrInvalid, "[1]", "[0]", "[-1]", "[1]")
	f("negative category", ErrInvalid, "[-1]", "[0]", "[0]", "[1]")
	f("category limit", ErrUnsupported, "[16777215]", "[0]", "[0]", "[1]")
	f("lengths", ErrInvalid, "[1]", "[0]", "[0,0]", "[1]")
}

// TestReadTruncated checks that every prefix of a model is an error.
func TestReadTruncated(t *testing.T) {
	check := func(name string, data []byte) {
		for n := range len(data) {
			if _, err := Read(data[:n]); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s cut at %d of %d: Read = %v; want ErrInvalid", name, n, len(data), err)
			}
		}
	}
	check("tiny", []byte(tiny))
	data, err := os.ReadFile(filepath.Join("testdata", "categorical.model.json"))
	if err != nil {
		t.Fatal(err)
	}
	check("categorical", data)
}

// TestGBLinear checks the linear booster that make.py writes.
func TestGBLinear(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "gblinear.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Read(data); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "gblinear") {
		t.Errorf("Read = %v; want ErrUnsupported naming gblinear", err)
	}
}

// allocated returns the bytes f allocates on the heap, as counted by
// runtime/metrics (which, unlike ReadMemStats, does not stop the world:
// fast enough for FuzzRead; small allocations are counted a span at a
// time, which maxAlloc's slack absorbs).
func allocated(f func() error) (uint64, error) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	err := f()
	metrics.Read(s)
	return s[0].Value.Uint64() - before, err
}

// maxAlloc is the allocation a file of n bytes may cause.
func maxAlloc(n int) uint64 { return 64*uint64(n) + 4<<20 }

// TestReadAllocationBounded feeds hostile files whose declared sizes are
// far larger than their content.
func TestReadAllocationBounded(t *testing.T) {
	f := func(name string, data string) {
		t.Helper()
		got, err := allocated(func() error { _, err := Read([]byte(data)); return err })
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if got > maxAlloc(len(data)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte file; want at most %d", name, got, len(data), maxAlloc(len(data)))
		}
		t.Logf("%s: %d bytes allocated for %d: %v", name, got, len(data), err)
	}
	many := func(item string, n int) string { return strings.TrimSuffix(strings.Repeat(item+",", n), ",") }
	f("many empty trees", strings.Replace(tiny, `"trees":[`, `"trees":[`+many("{}", 300000)+`,`, 1))
	f("many minimal trees", strings.Replace(tiny, `"trees":[`, `"trees":[`+many(`{"left_children":[-1],"right_children":[-1],"split_indices":[0],"split_conditions":[0],"default_left":[0]}`, 30000)+`,`, 1))
	f("long child array", strings.Replace(tiny, `"left_children":[1,-1,-1]`, `"left_children":[`+many("0", 1<<20)+`]`, 1))
	f("huge num_feature", strings.Replace(tiny, `"num_feature":"2","num_target"`, `"num_feature":"4294967296","num_target"`, 1))
	f("huge num_class", strings.Replace(tiny, `"num_class":"0"`, `"num_class":"1000000000"`, 1))
	f("huge num_trees", strings.Replace(tiny, `"num_trees":"1"`, `"num_trees":"1000000000"`, 1))
	f("huge num_nodes", strings.Replace(tiny, `"num_nodes":"3"`, `"num_nodes":"1000000000"`, 1))
	// Each categorical split with category 2^20 costs forest a 128 KiB
	// bitset; 3000 of them would be 390 MiB.
	tree := `{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],"split_conditions":[0,0,0],` +
		`"default_left":[0,0,0],"split_type":[1,0,0],"categories":[1048576],"categories_nodes":[0],"categories_segments":[0],"categories_sizes":[1]}`
	s := strings.Replace(tiny, `"id":0,`, ``, 1)
	s = strings.Replace(s, `"trees":[`, `"trees":[`+many(tree, 3000)+`,`, 1)
	s = strings.Replace(s, `"tree_info":[0]`, `"tree_info":[`+many("0", 3001)+`]`, 1)
	f("category bitsets", strings.Replace(s, `"num_trees":"1"`, `"num_trees":"3001"`, 1))
}

// TestReadTestdataAllocation checks the bound on the real models.
func TestReadTestdataAllocation(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.model.json"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := allocated(func() error { _, err := Read(data); return err })
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if got > maxAlloc(len(data)) {
			t.Errorf("%s: %d bytes allocated for %d; want at most %d", file, got, len(data), maxAlloc(len(data)))
		}
	}
}
