package dataset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// A shard file is a 16-byte header followed by one zstd frame of packed token ids:
//
//	magic   [4]byte  "XSPN"
//	version uint8    1
//	width   uint8    bytes per id: 1, 2 or 4 (ids are little-endian)
//	_       [2]byte  zero
//	tokens  uint64   number of ids, little-endian
const (
	shardMagic      = "XSPN"
	shardVersion    = 1
	shardHeaderSize = 16
	shardExt        = ".xsh"
	// maxShardTokens bounds a shard's token count (and so what a reader allocates).
	maxShardTokens = 1 << 30
)

func shardName(split string, i int) string {
	return fmt.Sprintf("%s-%05d%s", split, i, shardExt)
}

// appendShard appends the shard file of packed ids of the given width to dst.
func appendShard(dst []byte, enc *zstd.Encoder, packed []byte, width int) []byte {
	var h [shardHeaderSize]byte
	copy(h[:], shardMagic)
	h[4] = shardVersion
	h[5] = byte(width)
	binary.LittleEndian.PutUint64(h[8:], uint64(len(packed)/width))
	dst = append(dst, h[:]...)
	return enc.EncodeAll(packed, dst)
}

var (
	decoderOnce sync.Once
	decoder     *zstd.Decoder
	decoderErr  error
)

// shardDecoder is shared: zstd's DecodeAll is safe for concurrent use.
func shardDecoder() (*zstd.Decoder, error) {
	decoderOnce.Do(func() {
		decoder, decoderErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxWindow(1<<27))
	})
	return decoder, decoderErr
}

// decodeShard checks a shard file's header and decompresses its ids into dst (reused
// when large enough). It allocates no more than maxTokens ids' worth of memory.
func decodeShard(data []byte, maxTokens int64, dst []byte) (width int, packed []byte, err error) {
	if len(data) < shardHeaderSize || string(data[:4]) != shardMagic {
		return 0, nil, errors.New("not a shard file (bad magic)")
	}
	if data[4] != shardVersion {
		return 0, nil, fmt.Errorf("shard version %d is not supported (want %d)", data[4], shardVersion)
	}
	width = int(data[5])
	if width != 1 && width != 2 && width != 4 {
		return 0, nil, fmt.Errorf("bad token width %d", width)
	}
	n := binary.LittleEndian.Uint64(data[8:])
	if n == 0 || n > uint64(maxTokens) || n > maxShardTokens {
		return 0, nil, fmt.Errorf("bad token count %d", n)
	}
	size := int(n) * width
	if cap(dst) < size {
		dst = make([]byte, 0, size)
	}
	dec, err := shardDecoder()
	if err != nil {
		return 0, nil, err
	}
	packed, err = dec.DecodeAll(data[shardHeaderSize:], dst[:0:size])
	if err != nil {
		return 0, nil, fmt.Errorf("corrupt shard data: %w", err)
	}
	if len(packed) != size {
		return 0, nil, fmt.Errorf("shard holds %d bytes of ids, header says %d", len(packed), size)
	}
	return width, packed, nil
}

// unpack widens packed little-endian ids into dst, which must hold len(packed)/width.
func unpack(dst []uint32, packed []byte, width int) {
	switch width {
	case 1:
		for i, b := range packed[:len(dst)] {
			dst[i] = uint32(b)
		}
	case 2:
		for i := range dst {
			dst[i] = uint32(binary.LittleEndian.Uint16(packed[2*i:]))
		}
	default:
		for i := range dst {
			dst[i] = binary.LittleEndian.Uint32(packed[4*i:])
		}
	}
}

// pack narrows ids into little-endian ids of width bytes appended to dst.
func pack(dst []byte, ids []uint32, width int) []byte {
	for _, id := range ids {
		switch width {
		case 1:
			dst = append(dst, byte(id))
		case 2:
			dst = binary.LittleEndian.AppendUint16(dst, uint16(id))
		default:
			dst = binary.LittleEndian.AppendUint32(dst, id)
		}
	}
	return dst
}

func checksum(b []byte) string {
	return fmt.Sprintf("xxh64:%016x", xxhash.Sum64(b))
}

func parseChecksum(s string) (uint64, error) {
	hex, ok := strings.CutPrefix(s, "xxh64:")
	if !ok || len(hex) != 16 {
		return 0, fmt.Errorf("bad checksum %q (want xxh64:<16 hex digits>)", s)
	}
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("bad checksum %q", s)
	}
	return v, nil
}
