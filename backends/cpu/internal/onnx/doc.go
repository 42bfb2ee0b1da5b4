// Package onnx decodes the subset of an ONNX ModelProto that Coalesce's
// CPU engine reads (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto):
// the graph's nodes, attributes, initializers and typed inputs and
// outputs, with google.golang.org/protobuf/encoding/protowire and no
// generated code. Field numbers are those of the schema; fields not
// listed are skipped.
//
// Decode and DecodeTensor return an error, never panic, on bad input
// (FuzzLoadBytes in package cpu feeds them arbitrary bytes). What they
// return is plain data that aliases the input bytes (raw tensor data,
// bytes-valued attributes; strings are copied). Errors
// wrap ErrMalformed (bad wire format), ErrInvalidModel (a value out of
// range) or ErrUnsupported (valid ONNX this engine does not handle, e.g.
// external data), and name the message or field they concern. Checking
// the graph itself (operators, shapes, references) is package cpu's job.
package onnx

import "errors"

// Errors of the decoder; package cpu exports the same values as
// cpu.ErrMalformed, cpu.ErrInvalidModel and cpu.ErrUnsupported. Test with
// errors.Is.
var (
	// ErrMalformed: the bytes are not a well-formed ONNX message
	// (truncated, wrong wire types, data that does not match its dims).
	ErrMalformed = errors.New("malformed model")
	// ErrInvalidModel: a value is inconsistent (an attribute of the wrong
	// type or out of range).
	ErrInvalidModel = errors.New("invalid model")
	// ErrUnsupported: valid ONNX that this engine does not implement (a
	// datatype, external data, a segmented tensor).
	ErrUnsupported = errors.New("unsupported")
)

// MaxRank is the largest tensor rank the engine handles (its kernels keep
// index counters in fixed-size arrays); Tensor.ToTensor rejects more.
const MaxRank = 16
