package xgboost

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// raw is a model file as read, before it is checked against its
// parameters: XGBoost writes learner_model_param (num_feature, ...) after
// the trees, so trees are kept as typed arrays until the file is read.
type raw struct {
	version    []int32
	booster    string // gradient_booster.name
	inner      string // dart: gradient_booster.gbtree.name
	models     int    // gbtree models seen (0 for gblinear)
	objective  string
	baseScore  string // learner_model_param, as written ("5E-1")
	numFeature string
	numClass   string
	numTarget  string
	numTrees   string // gbtree_model_param
	names      []string
	treeInfo   []int32
	hasInfo    bool
	weightDrop []float32
	hasDrop    bool
	trees      []*tree
}

// tree is one tree's arrays, of equal length n (categorical: split_type
// 1), and its categorical splits: node catNodes[k]'s categories are
// cats[catSegs[k] : catSegs[k]+catSizes[k]].
type tree struct {
	id                  int32 // "id", or -1 when absent
	numNodes, leafWidth int32 // tree_param, or -1 when absent
	left, right         []int32
	feature             []int32
	cond                []float32 // split condition, or a leaf's value
	defaultLeft         []bool
	categorical         []bool
	catNodes            []int32
	catSegs, catSizes   []int32
	cats                []int32
}

// fields calls f for each key of an object that is one of names, and
// skips the others; a repeated key is an error.
func (s *scanner) fields(names []string, f func(name string) error) error {
	var seen uint64
	return s.object(func(key []byte) error {
		for i, n := range names {
			if string(key) == n {
				if seen&(1<<i) != 0 {
					return s.errorf("duplicate key %q", n)
				}
				seen |= 1 << i
				return f(n)
			}
		}
		return s.skip(0)
	})
}

// text reads a string and copies it.
func (s *scanner) text() (string, error) {
	b, err := s.str()
	return string(b), err
}

// paramText reads a dmlc parameter (a string or a number) and copies it.
func (s *scanner) paramText() (string, error) {
	b, err := s.param()
	if len(b) > 64 {
		return "", s.errorf("parameter value longer than 64 bytes")
	}
	return string(b), err
}

func parse(data []byte) (*raw, error) {
	s := &scanner{data: data}
	r := &raw{}
	err := s.fields([]string{"learner", "version"}, func(name string) error {
		if name == "version" {
			var err error
			r.version, err = s.int32s(0, math.MaxInt32)
			if err == nil && len(r.version) > 3 {
				err = s.errorf("version has %d numbers; want 3", len(r.version))
			}
			return err
		}
		return r.learner(s)
	})
	if err != nil {
		return nil, err
	}
	if s.ws(); s.pos != len(data) {
		return nil, s.errorf("data after the model")
	}
	return r, nil
}

func (r *raw) learner(s *scanner) error {
	return s.fields([]string{"feature_names", "gradient_booster", "learner_model_param", "objective"}, func(name string) error {
		switch name {
		case "feature_names":
			r.names = make([]string, 0, s.arrayLen())
			defer func() {
				if len(r.names) == 0 {
					r.names = nil // 1.7 writes [] when there are none
				}
			}()
			return s.array(func() error {
				b, err := s.str()
				if err == nil && !utf8.Valid(b) {
					err = s.errorf("feature name is not UTF-8")
				}
				r.names = append(r.names, string(b))
				return err
			})
		case "gradient_booster":
			return r.gradientBooster(s)
		case "learner_model_param":
			return s.fields([]string{"base_score", "num_class", "num_feature", "num_target"}, func(name string) (err error) {
				switch name {
				case "base_score":
					r.baseScore, err = s.paramText()
				case "num_class":
					r.numClass, err = s.paramText()
				case "num_feature":
					r.numFeature, err = s.paramText()
				case "num_target":
					r.numTarget, err = s.paramText()
				}
				return err
			})
		}
		// objective: {"name": "binary:logistic", "reg_loss_param": {...}}
		return s.fields([]string{"name"}, func(string) (err error) {
			r.objective, err = s.text()
			return err
		})
	})
}

// gradientBooster reads gradient_booster: {"model": ..., "name": "gbtree"}, or
// for dart {"gbtree": {"model": ..., "name": "gbtree"}, "name": "dart",
// "weight_drop": [...]}.
func (r *raw) gradientBooster(s *scanner) error {
	return s.fields([]string{"gbtree", "model", "name", "weight_drop"}, func(name string) (err error) {
		switch name {
		case "gbtree":
			return s.fields([]string{"model", "name"}, func(name string) (err error) {
				if name == "name" {
					r.inner, err = s.text()
					return err
				}
				return r.model(s)
			})
		case "model":
			return r.model(s)
		case "name":
			r.booster, err = s.text()
		case "weight_drop":
			r.hasDrop = true
			r.weightDrop, err = s.float32s()
		}
		return err
	})
}

func (r *raw) model(s *scanner) error {
	r.models++
	if r.models > 1 {
		return s.errorf("more than one tree model")
	}
	return s.fields([]string{"gbtree_model_param", "tree_info", "trees"}, func(name string) (err error) {
		switch name {
		case "gbtree_model_param":
			return s.fields([]string{"num_trees"}, func(string) (err error) {
				r.numTrees, err = s.paramText()
				return err
			})
		case "tree_info":
			r.hasInfo = true
			r.treeInfo, err = s.int32s(math.MinInt32, math.MaxInt32)
			return err
		}
		return s.array(func() error { return r.tree(s) })
	})
}

var treeKeys = []string{
	"categories", "categories_nodes", "categories_segments", "categories_sizes",
	"default_left", "id", "left_children", "right_children",
	"split_conditions", "split_indices", "split_type", "tree_param",
}

// tree reads one tree object.
func (r *raw) tree(s *scanner) error {
	if len(r.trees) == maxTrees {
		return fmt.Errorf("%w: more than %d trees (the limit of this reader)", ErrUnsupported, maxTrees)
	}
	t := &tree{id: -1, numNodes: -1, leafWidth: -1}
	const lo, hi = math.MinInt32, math.MaxInt32
	err := s.fields(treeKeys, func(name string) (err error) {
		switch name {
		case "categories":
			t.cats, err = s.int32s(lo, hi)
		case "categories_nodes":
			t.catNodes, err = s.int32s(lo, hi)
		case "categories_segments":
			t.catSegs, err = s.int32s(lo, hi)
		case "categories_sizes":
			t.catSizes, err = s.int32s(lo, hi)
		case "default_left":
			t.defaultLeft, err = s.bools()
		case "id":
			var v int64
			v, err = s.int(0, hi)
			t.id = int32(v)
		case "left_children":
			t.left, err = s.int32s(lo, hi)
		case "right_children":
			t.right, err = s.int32s(lo, hi)
		case "split_conditions":
			t.cond, err = s.float32s()
		case "split_indices":
			// bst_feature_t is unsigned; above int32 is out of range
			// for any num_feature this reader accepts.
			t.feature, err = s.int32s(0, hi)
		case "split_type": // 0 numerical, 1 categorical
			t.categorical, err = s.bools()
		case "tree_param":
			err = s.fields([]string{"num_nodes", "size_leaf_vector"}, func(name string) error {
				v, err := s.param()
				if err != nil {
					return err
				}
				n, err := atoi(v, hi)
				if err != nil {
					return s.errorf("tree_param %s: %v", name, err)
				}
				if name == "num_nodes" {
					t.numNodes = int32(n)
				} else {
					t.leafWidth = int32(n)
				}
				return nil
			})
		}
		return err
	})
	if err != nil {
		return err
	}
	i, n := len(r.trees), len(t.left)
	if n == 0 {
		return fmt.Errorf("%w: tree %d has no nodes (left_children missing or empty)", ErrInvalid, i)
	}
	if t.categorical == nil {
		t.categorical = make([]bool, n) // XGBoost < 1.5
	}
	for _, a := range []struct {
		name string
		n    int
	}{
		{"right_children", len(t.right)},
		{"split_indices", len(t.feature)},
		{"split_conditions", len(t.cond)},
		{"default_left", len(t.defaultLeft)},
		{"split_type", len(t.categorical)},
	} {
		if a.n != n {
			return fmt.Errorf("%w: tree %d: %d left_children but %d %s", ErrInvalid, i, n, a.n, a.name)
		}
	}
	if t.numNodes >= 0 && int(t.numNodes) != n {
		return fmt.Errorf("%w: tree %d: num_nodes %d but %d left_children", ErrInvalid, i, t.numNodes, n)
	}
	if t.leafWidth > 1 {
		return fmt.Errorf("%w: tree %d: size_leaf_vector %d (vector leaves of multi_strategy=multi_output_tree)", ErrUnsupported, i, t.leafWidth)
	}
	if len(t.catSegs) != len(t.catNodes) || len(t.catSizes) != len(t.catNodes) {
		return fmt.Errorf("%w: tree %d: %d categories_nodes, %d categories_segments, %d categories_sizes",
			ErrInvalid, i, len(t.catNodes), len(t.catSegs), len(t.catSizes))
	}
	r.trees = append(r.trees, t)
	return nil
}
