package cpu

import (
	"errors"

	"github.com/coalesce-ml/coalesce/backends/cpu/internal/onnx"
)

// Errors returned by Load and LoadBytes, wrapped with the node or field
// they concern; test with errors.Is.
var (
	// ErrMalformed: the bytes are not a well-formed ONNX ModelProto
	// (truncated, wrong wire types, data that does not match its dims).
	ErrMalformed = onnx.ErrMalformed
	// ErrInvalidModel: the model decodes but its graph is inconsistent
	// (missing inputs, cycles, bad attribute values, shape mismatches).
	ErrInvalidModel = onnx.ErrInvalidModel
	// ErrUnsupported: the model is valid ONNX but uses something this
	// engine does not implement (an operator, a domain, a datatype,
	// external data).
	ErrUnsupported = onnx.ErrUnsupported
	// ErrClosed: Infer was called after Close.
	ErrClosed = errors.New("backend closed")
)
