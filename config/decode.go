package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/v2"
)

var (
	durationType = reflect.TypeOf(time.Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

// decode copies the values of k into the struct dst points to with
// koanf's own decoder (mapstructure), the one decoder of every
// configuration: Load's and LoadModel's. Keys absent from k leave their
// field unchanged; a key dst has no field for, an empty value or a value
// of the wrong type is an error naming the key, where it was set (origin,
// by dotted key; may be nil) and what was expected.
func decode(k *koanf.Koanf, dst any, origin map[string]string) error {
	root := reflect.TypeOf(dst).Elem()
	// mapstructure skips null values, so "read_timeout:" with nothing
	// after it would silently keep the default.
	for _, key := range k.Keys() {
		if t := typeAt(root, key); t != nil && leaf(t) && k.Get(key) == nil {
			return keyError(key, origin, errors.New("value is empty; want "+want(t)))
		}
	}
	err := k.UnmarshalWithConf("", dst, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			// The hooks do every conversion, so mapstructure's own weak
			// typing (true → 1, "" → 0, 1.5 → 1) stays off.
			DecodeHook:  hooks,
			ErrorUnused: true,
			TagName:     "koanf",
		},
	})
	if err == nil {
		return nil
	}
	return translate(err, root, k, origin)
}

// hooks are the decode hooks, in order: a value already of the field's
// type (the defaults, typed flags) passes each unchanged; durations and
// sizes are parsed by their own hook; scalarHook does the rest.
var hooks = mapstructure.ComposeDecodeHookFunc(durationHook, byteSizeHook, scalarHook)

// durationHook turns a string such as "500ms" into a time.Duration field
// and refuses a bare number, whose unit nobody can guess.
func durationHook(from, to reflect.Value) (any, error) {
	v := from.Interface()
	if to.Type() != durationType || from.Type() == to.Type() {
		return v, nil
	}
	switch x := v.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration; want %s", x, want(durationType))
		}
		return d, nil
	case int, int64, float64:
		return nil, fmt.Errorf("%v has no unit; want %s", x, want(durationType))
	}
	return nil, fmt.Errorf("%s is not a duration; want %s", show(v), want(durationType))
}

// byteSizeHook turns "16MiB", "4MB" or a whole number of bytes into a
// ByteSize field.
func byteSizeHook(from, to reflect.Value) (any, error) {
	v := from.Interface()
	if to.Type() != byteSizeType || from.Type() == to.Type() {
		return v, nil
	}
	switch x := v.(type) {
	case string:
		return ParseByteSize(x)
	case int, int64, float64:
		n, err := whole(x)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%v is not a whole number of bytes; want %s", x, want(byteSizeType))
		}
		return ByteSize(n), nil
	}
	return nil, fmt.Errorf("%s is not a size; want %s", show(v), want(byteSizeType))
}

// scalarHook turns the values YAML, the environment and flags produce
// (strings, ints, float64s, bools, lists, maps) into the field's kind, or
// says what was expected: mapstructure's own weak typing would accept
// true as 1 and truncate 1.5 to 1, and its errors name Go types.
func scalarHook(from, to reflect.Value) (any, error) {
	v := from.Interface()
	if from.Type() == to.Type() {
		return v, nil
	}
	switch to.Kind() {
	case reflect.String:
		switch x := v.(type) {
		case int, int64, float64, bool:
			return fmt.Sprint(x), nil // addr: 8080 in YAML means the text
		case string:
			return x, nil
		}
	case reflect.Int, reflect.Int64:
		switch x := v.(type) {
		case int, int64, float64:
			n, err := whole(x)
			if err != nil {
				return nil, fmt.Errorf("%v is not a whole number; want %s", x, want(to.Type()))
			}
			return n, nil
		case string:
			n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer; want %s", x, want(to.Type()))
			}
			return n, nil
		}
	case reflect.Float64:
		switch x := v.(type) {
		case int:
			return float64(x), nil
		case int64:
			return float64(x), nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a number; want %s", x, want(to.Type()))
			}
			return f, nil
		}
	case reflect.Bool:
		if x, ok := v.(string); ok {
			b, err := strconv.ParseBool(strings.TrimSpace(x))
			if err != nil {
				return nil, fmt.Errorf("%q is not a boolean; want %s", x, want(to.Type()))
			}
			return b, nil
		}
	case reflect.Slice:
		switch x := v.(type) {
		case []any:
			return x, nil
		case string:
			// The environment's form of a list: comma-separated.
			if to.Type().Elem().Kind() == reflect.String {
				if x == "" {
					return []string{}, nil
				}
				return strings.Split(x, ","), nil
			}
		}
	case reflect.Struct:
		if _, ok := v.(map[string]any); ok {
			return v, nil
		}
	case reflect.Pointer:
		return v, nil // mapstructure decodes into the element, calling the hooks again
	}
	if from.Kind() == to.Kind() {
		return v, nil // int into int64 and the like
	}
	if w := want(to.Type()); w != kindName(to.Type()) {
		return nil, fmt.Errorf("%s is not %s; want %s", show(v), kindName(to.Type()), w)
	}
	return nil, fmt.Errorf("%s is not %s", show(v), kindName(to.Type()))
}

// whole returns x as an integer, or an error when it has a fraction.
func whole(x any) (int64, error) {
	switch n := x.(type) {
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case float64:
		if n == float64(int64(n)) {
			return int64(n), nil
		}
	}
	return 0, fmt.Errorf("%v is not a whole number", x)
}

// show renders a value in an error: strings quoted, the rest as Go prints
// them.
func show(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "a list"
	case reflect.Struct:
		return "a mapping"
	}
	return "a " + t.String()
}

// want says what a value of type t looks like.
func want(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a number with a unit, such as 500ms, 5s or 1m"
	case t == byteSizeType:
		return "a number of bytes, such as 1048576, 512KiB or 16MiB"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		switch e := t.Elem(); e.Kind() {
		case reflect.Struct:
			return "a list of mappings of " + strings.Join(tags(e), ", ")
		case reflect.String:
			return "a list of strings"
		default:
			return "a list of " + strings.TrimPrefix(want(e), "a ") + "s"
		}
	case reflect.Struct:
		return "a mapping of " + strings.Join(tags(t), ", ")
	case reflect.Pointer:
		return want(t.Elem())
	}
	return t.String()
}

// tags lists the koanf keys of struct type t.
func tags(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("koanf"); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// typeAt returns the type of the field at path under root ("http.addr",
// "inputs[0].dims"), or nil when no field has that path.
func typeAt(root reflect.Type, path string) reflect.Type {
	t := root
	for _, part := range strings.Split(path, ".") {
		name, _, indexed := strings.Cut(part, "[")
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTag(t, name)
		if !ok {
			return nil
		}
		t = f.Type
		if indexed {
			if t.Kind() != reflect.Slice {
				return nil
			}
			t = t.Elem()
		}
	}
	return t
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("koanf") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// translate turns mapstructure's errors into one line naming the key: the
// first unknown key if any, else the first bad value in declaration order.
func translate(err error, root reflect.Type, k *koanf.Koanf, origin map[string]string) error {
	var errs []*mapstructure.DecodeError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var de *mapstructure.DecodeError
		if errors.As(e, &de) {
			errs = append(errs, de)
		}
	}
	walk(err)
	if len(errs) == 0 {
		return fmt.Errorf("config: %w", err) // not from a key: a bug in a hook or in mapstructure
	}
	for _, de := range errs {
		name := de.Name()
		if name == root.String() {
			name = "" // mapstructure names the root struct by its type
		}
		if list, ok := strings.CutPrefix(de.Unwrap().Error(), "has invalid keys: "); ok {
			return unknownKey(name, strings.Split(list, ", ")[0], root, k, origin)
		}
	}
	de := errs[0]
	return keyError(de.Name(), origin, de.Unwrap())
}

// unknownKey describes key under section (a dotted path, "" for the root)
// as unknown and lists what that section has.
func unknownKey(section, key string, root reflect.Type, k *koanf.Koanf, origin map[string]string) error {
	// Inside a list element ("inputs[0]") keys are relative to the element;
	// elsewhere they are full dotted paths.
	prefix, rel := "", section
	if i := strings.LastIndexByte(section, ']'); i >= 0 {
		prefix, rel = section[:i+1]+": ", strings.TrimPrefix(section[i+1:], ".")
	}
	full := key
	if rel != "" {
		full = rel + "." + key
	}
	// A whole unknown section ("htp:") is reported by its first key, which
	// is what the user typed.
	if sub := k.Cut(full); len(sub.Keys()) > 0 && prefix == "" {
		keys := sub.Keys()
		sort.Strings(keys)
		full += "." + keys[0]
	}
	var have []string
	if t := typeAt(root, section); t != nil && section != "" {
		have = tags(t)
	} else if section == "" {
		have = tags(root)
	}
	src := ""
	if o := origin[full]; o != "" {
		src = o + ": "
	}
	switch {
	case section != "" && prefix == "":
		return fmt.Errorf("config: %sunknown key %q; want one of %s under %q", src, full, strings.Join(have, ", "), section)
	case prefix != "":
		return fmt.Errorf("config: %s%sunknown key %q; want one of %s", src, prefix, full, strings.Join(have, ", "))
	case leafKeys(root) && len(have) > 0:
		return fmt.Errorf("config: %sunknown key %q; want one of %s", src, full, strings.Join(have, ", "))
	}
	return fmt.Errorf("config: %sunknown key %q; want a key under one of %s", src, full, strings.Join(have, ", "))
}

// leafKeys reports whether root has keys of its own, not only sections.
func leafKeys(root reflect.Type) bool {
	for i := range root.NumField() {
		if leaf(root.Field(i).Type) {
			return true
		}
	}
	return false
}

// keyError is the error for a bad value at key: "config: key (origin):
// what is wrong; want what".
func keyError(key string, origin map[string]string, err error) error {
	base := key
	if i := strings.IndexByte(base, '['); i >= 0 {
		base = base[:i]
	}
	if o := origin[base]; o != "" {
		return fmt.Errorf("config: %s (%s): %w", key, o, err)
	}
	return fmt.Errorf("config: %s: %w", key, err)
}
