package lightgbm

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// edit replaces the one occurrence of old in baseModel (the test fails
// otherwise, so that an edit cannot silently miss).
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	s := baseModel
	for i := 0; i < len(pairs); i += 2 {
		if strings.Count(s, pairs[i]) != 1 {
			t.Fatalf("%q occurs %d times in baseModel", pairs[i], strings.Count(s, pairs[i]))
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

// tree1 is the categorical tree's block in baseModel, to edit it alone.
const tree1 = "Tree=1\nnum_leaves=2\nnum_cat=1\nsplit_feature=1\nsplit_gain=3\nthreshold=0\ndecision_type=9\n"

func TestReadErrors(t *testing.T) {
	f := func(name, text string, sentinel error, want string) {
		t.Helper()
		m, err := Read([]byte(text))
		switch {
		case err == nil:
			t.Errorf("%s: accepted (%d trees)", name, m.Forest.NumTrees())
		case !errors.Is(err, sentinel):
			t.Errorf("%s: error %q does not wrap %q", name, err, sentinel)
		case !strings.Contains(err.Error(), want):
			t.Errorf("%s: error %q; want it to contain %q", name, err, want)
		}
	}
	// Whole-file structure.
	f("empty", "", ErrInvalid, "truncated")
	f("not a model", "hello\nworld\n", ErrInvalid, `want "tree"`)
	f("JSON dump", `{"name":"tree","version":"v4"}`, ErrInvalid, `want "tree"`)
	f("no end of trees", baseModel[:strings.Index(baseModel, "end of trees")], ErrInvalid, `truncated: no "end of trees" after 2 trees`)
	f("no end of trees, more after", edit(t, "end of trees\n", ""), ErrInvalid, `"feature_importances:" where a tree or "end of trees" should be`)
	f("no trees", baseModel[:strings.Index(baseModel, "Tree=0")]+"end of trees\n", ErrInvalid, "no trees")
	f("header only", baseModel[:strings.Index(baseModel, "Tree=0")], ErrInvalid, "truncated")
	f("line between trees", edit(t, "\n\nTree=1", "\n\nfoo\nTree=1"), ErrInvalid, `"foo" where a tree`)
	f("trees out of order", edit(t, "Tree=1", "Tree=2"), ErrInvalid, "want Tree=1")
	f("tree index not a number", edit(t, "Tree=0", "Tree=zero"), ErrInvalid, "want Tree=0")
	f("tree line not key=value", edit(t, "num_leaves=3\n", "num_leaves=3\nbogus\n"), ErrInvalid, `"bogus" is not key=value`)
	f("tree_sizes count", edit(t, "tree_sizes=401 298", "tree_sizes=401"), ErrInvalid, "tree_sizes has 1 values; want 2")
	// Header.
	for _, key := range []string{"version=v4", "num_class=1", "label_index=0", "max_feature_idx=1", "feature_names=x c", "feature_infos=[-1:1] 1:2:33"} {
		k, _, _ := strings.Cut(key, "=")
		f("no "+k, edit(t, key+"\n", ""), ErrInvalid, "the header has no "+k)
	}
	f("version v2", edit(t, "version=v4", "version=v2"), ErrUnsupported, `format version "v2"`)
	f("duplicate key", edit(t, "num_class=1\n", "num_class=1\nnum_class=1\n"), ErrInvalid, "num_class given twice")
	f("two '='", edit(t, "label_index=0", "label_index=0=1"), ErrInvalid, "more than one '='")
	f("num_class 0", edit(t, "num_class=1", "num_class=0"), ErrInvalid, "num_class")
	f("num_class huge", edit(t, "num_class=1", "num_class=100000"), ErrTooLarge, "num_class = 100000 exceeds the limit of 65536")
	f("num_class not a number", edit(t, "num_class=1", "num_class=one"), ErrInvalid, `num_class = "one"`)
	f("max_feature_idx huge", edit(t, "max_feature_idx=1", "max_feature_idx=99999999"), ErrTooLarge, "max_feature_idx")
	f("max_feature_idx negative", edit(t, "max_feature_idx=1", "max_feature_idx=-1"), ErrInvalid, "max_feature_idx")
	f("feature_names count", edit(t, "max_feature_idx=1", "max_feature_idx=2"), ErrInvalid, "feature_names has 2 values; want 3")
	f("feature_infos count", edit(t, "feature_infos=[-1:1] 1:2:33", "feature_infos=[-1:1]"), ErrInvalid, "feature_infos has 1 values; want 2")
	// Objectives.
	obj := func(o string) string { return edit(t, "objective=binary sigmoid:1", "objective="+o) }
	f("unknown objective", obj("magic"), ErrUnsupported, "objective magic: unknown objective")
	f("empty objective", obj(""), ErrInvalid, "empty objective")
	f("binary without sigmoid", obj("binary"), ErrInvalid, "sigmoid")
	f("binary sigmoid 0", obj("binary sigmoid:0"), ErrInvalid, "sigmoid")
	f("binary sigmoid nan", obj("binary sigmoid:nan"), ErrInvalid, "sigmoid")
	f("cross_entropy_lambda", obj("cross_entropy_lambda"), ErrUnsupported, "log(1+exp(m))")
	f("regression sqrt", obj("regression sqrt"), ErrUnsupported, "reg_sqrt")
	f("multiclass num_class mismatch", obj("multiclass num_class:3"), ErrInvalid, "num_class")
	f("multiclassova without sigmoid", edit(t, "num_class=1\nnum_tree_per_iteration=1", "num_class=2\nnum_tree_per_iteration=2",
		"objective=binary sigmoid:1", "objective=multiclassova num_class:2"), ErrInvalid, "sigmoid")
	f("binary with 2 trees per iteration", edit(t, "num_tree_per_iteration=1", "num_tree_per_iteration=2"), ErrInvalid, "scores one value")
	f("multiclass, 1 tree per iteration", edit(t, "num_class=1\nnum_tree_per_iteration=1", "num_class=2\nnum_tree_per_iteration=1",
		"objective=binary sigmoid:1", "objective=multiclass num_class:2"), ErrInvalid, "one tree per class")
	f("incomplete iteration", edit(t, "num_tree_per_iteration=1", "num_tree_per_iteration=3", "objective=binary sigmoid:1", "objective=none"),
		ErrInvalid, "2 trees is not a whole number of iterations")
	// Tree keys.
	for _, key := range []string{"num_leaves=3", "leaf_value=0.1", "split_feature=0 0", "threshold=0.5 -0.25", "left_child=1 -1", "right_child=-2 -3"} {
		k, _, _ := strings.Cut(key, "=")
		line := baseModel[strings.Index(baseModel, key):]
		line = line[:strings.IndexByte(line, '\n')+1]
		f("no "+k, edit(t, line, ""), ErrInvalid, "tree 0 has no "+k)
	}
	f("no num_cat", edit(t, "num_leaves=2\nnum_cat=1\n", "num_leaves=2\n"), ErrInvalid, "tree 1 has no num_cat")
	f("no cat_boundaries", edit(t, "cat_boundaries=0 2\n", ""), ErrInvalid, "tree 1 has no cat_boundaries")
	f("no cat_threshold", edit(t, "cat_threshold=2 2\n", ""), ErrInvalid, "tree 1 has no cat_threshold")
	f("duplicate tree key", edit(t, "num_leaves=3\n", "num_leaves=3\nnum_leaves=3\n"), ErrInvalid, "num_leaves given twice")
	// Counts and numbers.
	f("num_leaves above leaf_value", edit(t, "num_leaves=3", "num_leaves=4"), ErrInvalid, "leaf_value has 3 values; want 4 (tree 0, num_leaves=4)")
	f("num_leaves huge", edit(t, "num_leaves=3", "num_leaves=1000000000"), ErrTooLarge, "num_leaves = 1000000000 exceeds the limit of 131072")
	f("num_leaves 0", edit(t, "num_leaves=3", "num_leaves=0"), ErrInvalid, "num_leaves")
	f("num_leaves not a number", edit(t, "num_leaves=3", "num_leaves=3x"), ErrInvalid, "num_leaves")
	f("num_cat too big", edit(t, "num_cat=1", "num_cat=2"), ErrInvalid, "num_cat = 2; want at most 1")
	f("threshold short", edit(t, "threshold=0.5 -0.25", "threshold=0.5"), ErrInvalid, "threshold has 1 values; want 2")
	f("leaf_value long", edit(t, "leaf_value=0.125 -0.125", "leaf_value=0.125 -0.125 1"), ErrInvalid, "leaf_value has 3 values; want 2")
	f("threshold bad number", edit(t, "threshold=0.5 -0.25", "threshold=0.5 1.2.3"), ErrInvalid, `threshold[1] = "1.2.3"`)
	f("threshold NaN", edit(t, "threshold=0.5 -0.25", "threshold=0.5 nan"), ErrInvalid, `threshold[1] = "nan"`)
	f("leaf_value inf", edit(t, "leaf_value=0.125 -0.125", "leaf_value=0.125 inf"), ErrInvalid, `leaf_value[1] = "inf"`)
	f("leaf_value hex junk", edit(t, "leaf_value=0.125 -0.125", "leaf_value=0.125 0x"), ErrInvalid, `leaf_value[1]`)
	f("split_feature out of range", edit(t, "split_feature=0 0", "split_feature=0 2"), ErrInvalid, "split_feature[1] = \"2\"; want an integer in [0, 1]")
	f("split_feature negative", edit(t, "split_feature=0 0", "split_feature=-1 0"), ErrInvalid, "split_feature[0]")
	f("decision_type 16", edit(t, "decision_type=2 10", "decision_type=2 16"), ErrInvalid, "decision_type[1]")
	f("missing type 3", edit(t, "decision_type=2 10", "decision_type=2 14"), ErrInvalid, "missing type 3")
	f("is_linear", edit(t, "is_linear=0\nshrinkage=1\n\n\nTree=1", "is_linear=1\nshrinkage=1\n\n\nTree=1"), ErrUnsupported, "tree 0 is linear")
	f("is_linear junk", edit(t, "is_linear=0\nshrinkage=1\n\n\nTree=1", "is_linear=yes\nshrinkage=1\n\n\nTree=1"), ErrInvalid, "is_linear")
	// Shape.
	f("left child out of range", edit(t, "left_child=1 -1", "left_child=5 -1"), ErrInvalid, `left_child[0] = "5"; want an integer in [-3, 1]`)
	f("leaf out of range", edit(t, "right_child=-2 -3", "right_child=-2 -9"), ErrInvalid, `right_child[1] = "-9"`)
	f("cycle to the root", edit(t, "left_child=1 -1", "left_child=1 0"), ErrInvalid, "internal node 0 is reached twice")
	f("self loop", edit(t, "left_child=1 -1", "left_child=1 1"), ErrInvalid, "internal node 1 is reached twice")
	f("shared leaf", edit(t, "right_child=-2 -3", "right_child=-2 -2"), ErrInvalid, "leaf 1 is reached twice")
	f("unreachable subtree", edit(t, "left_child=1 -1", "left_child=-1 -1"), ErrInvalid, "2 of its 5 nodes are not reached")
	f("unreachable cycle", edit(t, "left_child=1 -1", "left_child=-1 -3", "right_child=-2 -3", "right_child=-2 1"), ErrInvalid, "2 of its 5 nodes are not reached")
	// Categorical.
	f("category set index out of range", edit(t, tree1, strings.Replace(tree1, "threshold=0", "threshold=1", 1)), ErrInvalid, "want a category set index in [0, num_cat=1)")
	f("category set index fractional", edit(t, tree1, strings.Replace(tree1, "threshold=0", "threshold=0.5", 1)), ErrInvalid, "category set index")
	f("categorical without num_cat", edit(t, tree1, strings.Replace(tree1, "num_cat=1", "num_cat=0", 1)), ErrInvalid, "categorical but num_cat=0")
	f("cat_boundaries from 1", edit(t, "cat_boundaries=0 2", "cat_boundaries=1 2"), ErrInvalid, "cat_boundaries[0] = 1")
	f("cat_boundaries decreasing", edit(t, "num_cat=1\nsplit_feature=1", "num_cat=1\nsplit_feature=1", "cat_boundaries=0 2", "cat_boundaries=0 2 1"), ErrInvalid, "cat_boundaries has 3 values; want 2")
	f("cat_threshold short", edit(t, "cat_boundaries=0 2", "cat_boundaries=0 3"), ErrInvalid, "cat_threshold has 2 values; want 3")
	f("cat_threshold huge count", edit(t, "cat_boundaries=0 2", "cat_boundaries=0 2147483647"), ErrInvalid, "cat_threshold has 2 values; want 2147483647")
	f("cat_threshold word too big", edit(t, "cat_threshold=2 2", "cat_threshold=2 4294967296"), ErrInvalid, `cat_threshold[1] = "4294967296"`)
	f("cat_threshold negative", edit(t, "cat_threshold=2 2", "cat_threshold=2 -2"), ErrInvalid, `cat_threshold[1]`)
	big := strings.Repeat("0 ", 32768) + "2"
	f("category too large", edit(t, "cat_boundaries=0 2", "cat_boundaries=0 32769", "cat_threshold=2 2", "cat_threshold="+big),
		ErrTooLarge, "category 1048577 exceeds forest's limit of 1048576")
	shared := "num_leaves=3\nnum_cat=1\nsplit_feature=1 1\nthreshold=0 0\ndecision_type=1 1\nleft_child=1 -1\nright_child=-2 -3\nleaf_value=1 2 3\ncat_boundaries=0 1\ncat_threshold=1\n"
	f("category set shared", edit(t, baseModel[strings.Index(baseModel, "Tree=1\n"):strings.Index(baseModel, "end of trees")], "Tree=1\n"+shared+"\n"),
		ErrInvalid, "category set 0 is used by two nodes")
}

// TestTruncated cuts baseModel at every byte: every cut before the end of
// the "end of trees" line is an error, never a panic.
func TestTruncated(t *testing.T) {
	end := strings.Index(baseModel, "end of trees") + len("end of trees")
	for n := 0; n <= len(baseModel); n++ {
		m, err := Read([]byte(baseModel[:n]))
		if n < end && err == nil {
			t.Fatalf("cut at %d of %d accepted (%d trees): %q", n, len(baseModel), m.Forest.NumTrees(), baseModel[max(0, n-20):n])
		}
		if n >= end && err != nil {
			t.Fatalf("cut at %d, after the trees: %v", n, err)
		}
	}
}

// TestAllocationBounded reads hostile texts whose counts promise far more
// than they hold and checks that Read allocates in proportion to the text.
func TestAllocationBounded(t *testing.T) {
	f := func(name, text string) {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Read([]byte(text))
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		if limit := uint64(64*len(text) + 1<<20); alloc > limit {
			t.Errorf("%s: %d bytes allocated for %d bytes of text (err %v); want at most %d", name, alloc, len(text), err, limit)
		}
		t.Logf("%s: %d bytes of text, %d allocated, %v", name, len(text), alloc, err)
	}
	f("num_leaves 131072", edit(t, "num_leaves=3", "num_leaves=131072"))
	f("cat_boundaries 2^31-1", edit(t, "cat_boundaries=0 2", "cat_boundaries=0 2147483647"))
	f("max_feature_idx 2^24-1", edit(t, "max_feature_idx=1", "max_feature_idx=16777215"))
	f("num_class 65536", edit(t, "num_class=1\nnum_tree_per_iteration=1", "num_class=65536\nnum_tree_per_iteration=65536", "objective=binary sigmoid:1", "objective=none"))
	// Leaves whose bitsets are all ones: 32 categories per word.
	ones := strings.TrimSuffix(strings.Repeat("4294967295 ", 32768), " ")
	f("full category sets", edit(t, "cat_boundaries=0 2", "cat_boundaries=0 32768", "cat_threshold=2 2", "cat_threshold="+ones))
	// A model with the most leaves: the limit holds for valid models too.
	var b strings.Builder
	const nl = 1 << 17
	b.WriteString("tree\nversion=v4\nnum_class=1\nlabel_index=0\nmax_feature_idx=0\nfeature_names=x\nfeature_infos=none\nTree=0\n")
	fmt.Fprintf(&b, "num_leaves=%d\nnum_cat=0\nsplit_feature=%s\nthreshold=%s\n", nl, repeat("0", nl-1), repeat("1", nl-1))
	left, right := make([]int, nl-1), make([]int, nl-1) // a chain: node i goes left to leaf i, right to node i+1
	for i := range left {
		left[i], right[i] = ^i, i+1
	}
	right[nl-2] = ^(nl - 1)
	fmt.Fprintf(&b, "left_child=%s\nright_child=%s\nleaf_value=%s\n\nend of trees\n", join(left, itoa), join(right, itoa), repeat("1", nl))
	f("chain of 131072 leaves", b.String())
}
