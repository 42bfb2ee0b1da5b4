package h2

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestWriteBlock: a header block larger than a frame goes out as HEADERS
// and CONTINUATION frames that a reader puts back together, END_STREAM
// on the HEADERS frame as asked; a small one fits in one frame.
func TestWriteBlock(t *testing.T) {
	for _, c := range []struct {
		value string
		end   bool
	}{{"short", true}, {string(bytes.Repeat([]byte("0123456789"), 20)), false}} {
		var hb bytes.Buffer
		if err := hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: "x-key", Value: c.value}); err != nil {
			t.Fatal(err)
		}
		wantFrames := (hb.Len() + 49) / 50 // frames of at most 50 bytes
		if len(c.value) > 100 && wantFrames < 2 {
			t.Fatalf("a %d-byte block; the test wants one over a frame", hb.Len())
		}
		var wire bytes.Buffer
		if err := WriteBlock(http2.NewFramer(&wire, nil), 7, c.end, hb.Bytes(), 50); err != nil {
			t.Fatal(err)
		}
		frames := 0
		for b := wire.Bytes(); len(b) >= 9; b = b[FrameLen(b):] {
			frames++
		}
		r := http2.NewFramer(nil, &wire)
		r.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		mh := f.(*http2.MetaHeadersFrame)
		if frames != wantFrames || mh.StreamID != 7 || mh.StreamEnded() != c.end || len(mh.Fields) != 1 || mh.Fields[0].Value != c.value {
			t.Errorf("%d-byte value: %d frames, stream %d, end %v, fields %v; want %d frames, stream 7, end %v, the value back",
				len(c.value), frames, mh.StreamID, mh.StreamEnded(), mh.Fields, wantFrames, c.end)
		}
	}
}

// TestFrameLen: the 24-bit payload length plus the 9-byte header (the
// length's bytes added, not OR-ed into the 9).
func TestFrameLen(t *testing.T) {
	for _, c := range []struct {
		hdr  []byte
		want int
	}{{[]byte{0, 0, 9}, 18}, {[]byte{0, 0, 0}, 9}, {[]byte{0, 0x40, 0x07}, 9 + 0x4007}, {[]byte{1, 0, 0}, 9 + 1<<16}} {
		if got := FrameLen(c.hdr); got != c.want {
			t.Errorf("FrameLen(% x) = %d; want %d", c.hdr, got, c.want)
		}
	}
}
