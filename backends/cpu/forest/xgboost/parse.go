package xgboost

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// raw is a model file as read, before it is checked against its
// parameters: XGBoost writes learner_model_param (num_feature, ...) after
// the trees, so trees are kept in typed arrays until the file is read.
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
	trees      []tree

	// The node arrays of all trees, concatenated: tree t owns
	// [trees[t].start, trees[t].start+trees[t].n) of each.
	left, right, feature []int32
	cond                 []float32 // split condition, or a leaf's value
	defaultLeft          []bool
	categorical          []bool // split_type 1
	// The categorical splits of all trees, concatenated: tree t owns
	// [catStart, catStart+catN) of catNodes, catSegs and catSizes, whose
	// segments index cats from catsStart.
	catNodes, catSegs, catSizes []int32
	cats                        []int32
}

// tree locates one tree's arrays in raw.
type tree struct {
	id                  int32 // "id", or -1 when absent
	start, n            int32
	catStart, catN      int32
	catsStart, catsN    int32
	numNodes, leafWidth int32 // tree_param, -1 when absent
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
			r.version, err = s.int32s(nil, 0, math.MaxInt32)
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
			r.weightDrop, err = s.float32s(nil)
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
			r.treeInfo, err = s.int32s(nil, math.MinInt32, math.MaxInt32)
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

// tree reads one tree object into the node arrays.
func (r *raw) tree(s *scanner) error {
	if len(r.trees) == maxTrees {
		return fmt.Errorf("%w: more than %d trees (the limit of this reader)", ErrUnsupported, maxTrees)
	}
	t := tree{id: -1, numNodes: -1, leafWidth: -1,
		start: int32(len(r.left)), catStart: int32(len(r.catNodes)), catsStart: int32(len(r.cats))}
	hasType := false
	const maxIndex = math.MaxInt32
	err := s.fields(treeKeys, func(name string) (err error) {
		switch name {
		case "categories":
			r.cats, err = s.int32s(r.cats, math.MinInt32, maxIndex)
		case "categories_nodes":
			r.catNodes, err = s.int32s(r.catNodes, math.MinInt32, maxIndex)
		case "categories_segments":
			r.catSegs, err = s.int32s(r.catSegs, math.MinInt32, maxIndex)
		case "categories_sizes":
			r.catSizes, err = s.int32s(r.catSizes, math.MinInt32, maxIndex)
		case "default_left":
			r.defaultLeft, err = s.bools(r.defaultLeft)
		case "id":
			var v int64
			v, err = s.int(0, maxIndex)
			t.id = int32(v)
		case "left_children":
			r.left, err = s.int32s(r.left, math.MinInt32, maxIndex)
		case "right_children":
			r.right, err = s.int32s(r.right, math.MinInt32, maxIndex)
		case "split_conditions":
			r.cond, err = s.float32s(r.cond)
		case "split_indices":
			// bst_feature_t is unsigned; larger than int32 is out of
			// range for any num_feature this reader accepts.
			r.feature, err = s.int32s(r.feature, 0, maxIndex)
		case "split_type":
			hasType = true
			r.categorical, err = s.bools(r.categorical)
		case "tree_param":
			err = s.fields([]string{"num_nodes", "size_leaf_vector"}, func(name string) error {
				v, err := s.param()
				if err != nil {
					return err
				}
				n, err := atoi(v, maxIndex)
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
	i := len(r.trees)
	t.n = int32(len(r.left)) - t.start
	if t.n == 0 {
		return fmt.Errorf("%w: tree %d has no nodes (left_children missing or empty)", ErrInvalid, i)
	}
	if !hasType {
		r.categorical = append(r.categorical, make([]bool, t.n)...)
	}
	for _, a := range []struct {
		name string
		n    int
	}{
		{"right_children", len(r.right)},
		{"split_indices", len(r.feature)},
		{"split_conditions", len(r.cond)},
		{"default_left", len(r.defaultLeft)},
		{"split_type", len(r.categorical)},
	} {
		if a.n-int(t.start) != int(t.n) {
			return fmt.Errorf("%w: tree %d: %d left_children but %d %s", ErrInvalid, i, t.n, a.n-int(t.start), a.name)
		}
	}
	if t.numNodes >= 0 && t.numNodes != t.n {
		return fmt.Errorf("%w: tree %d: num_nodes %d but %d left_children", ErrInvalid, i, t.numNodes, t.n)
	}
	if t.leafWidth > 1 {
		return fmt.Errorf("%w: tree %d: size_leaf_vector %d (vector leaves of multi_strategy=multi_output_tree)", ErrUnsupported, i, t.leafWidth)
	}
	t.catN = int32(len(r.catNodes)) - t.catStart
	if len(r.catSegs)-int(t.catStart) != int(t.catN) || len(r.catSizes)-int(t.catStart) != int(t.catN) {
		return fmt.Errorf("%w: tree %d: %d categories_nodes, %d categories_segments, %d categories_sizes",
			ErrInvalid, i, t.catN, len(r.catSegs)-int(t.catStart), len(r.catSizes)-int(t.catStart))
	}
	t.catsN = int32(len(r.cats)) - t.catsStart
	r.trees = append(r.trees, t)
	return nil
}
