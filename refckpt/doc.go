// Package refckpt reads checkpoints of the Expire-Span reference implementation
// (github.com/facebookresearch/transformer-sequential, models/expire_span.py) and maps
// them onto xspan's model, as plain Go data: no libtorch, no Python.
//
// # Reading
//
// [Read] opens what the reference's utils/checkpoint.save writes: torch.save (the zip
// format of PyTorch ≥ 1.6) of {"epoch", "model", "logger", "optimizer",
// "scheduler_epoch"}, "model" being DistributedDataParallel's state dict (names prefixed
// "module."). A small unpickler of its own walks the object tree (dicts, OrderedDicts,
// lists, tuples, sets, strings, numbers, torch._utils._rebuild_tensor_v2 and
// _rebuild_parameter, storages by persistent id; any other class becomes an [Object],
// nothing is imported or run). It never panics on bad input and allocates in proportion
// to the file: lengths are checked against what remains, storages must fill their
// records exactly, views must lie inside their storage, records must be stored
// uncompressed (as torch.save writes them) and pass their CRC. Errors name the file and
// what does not fit. The legacy pre-1.6 format is refused with a message saying so.
// [ReadCorpus] reads the reference's corpus cache (corpus.pt).
//
// # The architecture
//
// [InferArch] reads layers, d, heads, FFN width, vocabulary size, block M and L + R off the
// shapes, and checks that the state dict is exactly that of the reference's ExpireSpan
// model; anything else (TransformerSeq, the compressive, feedback or staircase models, a
// damaged dict) is an error naming the missing, extra or misshapen tensors. The
// checkpoint does not hold L and R apart (only their sum, from mask_causal's width), nor
// pre_div, α, p0, dropout or the random shortening: they come from the run's flags
// (the reference's defaults: R 32, pre_div 1, p0 0.1). Heads come from key_pe's d_h.
//
// # Mapping onto xspan's parameters
//
// [ToXspan] returns xspan's tensors under the names of lm.Model.NamedParameters. PyTorch's
// nn.Linear stores out×in and xspan multiplies x·W with W in×out, hence the transposes.
// With V the reference's vocabulary size, d the width, F the FFN width, d_h = d/K:
//
//	reference (without "module.")                         shape      xspan                shape  how
//	in_emb.weight                                          V×d        emb                  V'×d   rows permuted by the vocabulary map
//	layers.0.attn.attn.key_pe                              1×d_h×M    pos                  d_h×M  as is (shared by all layers in both)
//	layers.i.attn.attn.key_pe (i > 0)                      1×d_h×M    —                    —      must equal layer 0's (one table)
//	layers.i.attn.attn.mask_causal                         M×(L+M+R)  —                    —      a buffer: gives M and L+R only
//	layers.i.attn.proj_query.weight                        d×d        layeri.attn.wq       d×d    transposed
//	layers.i.attn.proj_key.weight                          d×d        layeri.attn.wk       d×d    transposed
//	layers.i.attn.proj_val.weight                          d×d        layeri.attn.wv       d×d    transposed
//	layers.i.attn.proj_out.weight                          d×d        layeri.attn.wo       d×d    transposed
//	layers.i.attn.attn.expire_span.span_predictor.weight   1×d        layeri.attn.span_w   d×1    same values
//	layers.i.attn.attn.expire_span.span_predictor.bias     1          layeri.attn.span_b   1      as is
//	layers.i.norm1.{weight,bias}                           d          layeri.norm1.*       d      as is
//	layers.i.norm2.{weight,bias}                           d          layeri.norm2.*       d      as is
//	layers.i.ff.fc1.weight, .bias                          F×d, F     layeri.ffn_w1, _b1   d×F, F transposed, as is
//	layers.i.ff.fc2.weight, .bias                          d×F, d     layeri.ffn_w2, _b2   F×d, d transposed, as is
//	out_norm.{weight,bias} (pre-norm only)                 d          norm_final.*         d      as is
//	out.out_emb.weight                                     V×d        out_w                d×V'   transposed, columns permuted
//	out.out_emb.bias                                       V          out_b                V'     permuted
//
// Heads split the projections' outputs the same way on both sides (head k owns features
// k·d_h … (k+1)·d_h−1). The position table keeps the reference's column layout: column c
// (0-based) holds distance M − c, which is what xspan's attention expects (its P = M).
// The reference adds the position term by slot to the last 2M keys; after every block its
// rule keeps the whole block just processed, so those slots are always the previous block
// and the current one, and xspan's lookup by each key's age gives the same scores.
//
// xspan settings for an imported model: block = M, pos_window = M (or 0), init_cache = M
// (or 0: the reference starts from M zero vectors with ages M…1), expire = true,
// max_span = L, ramp = R, pre_div from the flags, pre_norm from the state dict. Evaluate
// with the rectangular rule (expirespan.Rectangular) to reproduce the reference's cache
// lengths; batch 1's exact per-key rule keeps fewer keys with the same log-probabilities.
//
// # Vocabulary
//
// The reference's loader is word level even for characters: enwik8-format data writes
// each byte as a decimal number, and the vocabulary is every such token plus <eos> (counted
// once per line, even when --data-eos is off) and <unk>, sorted by count, most frequent
// first, ties in reverse order of first appearance; <unk> (count 0) is last. [BuildVocab]
// rebuilds it from train.txt, [ReadCorpus] reads it from the corpus cache, [Tokenize] gives
// the reference's ids of a split.
//
// [CharVocabMap] maps it onto an xspan char vocabulary, exactly: decimal byte b < 128 is
// the character b, <eos> is '\n' (without --data-eos the reference drops newlines and
// <eos> never occurs, but its output row still takes part in the softmax, so it must be
// kept), <unk> is xspan's <unk> (the last id); xspan orders characters by code point, so
// V' = V and rows and columns are a permutation. A byte of 128 or more is refused (it is a
// piece of UTF-8, not a character). [ByteVocabMap] maps onto the 256 bytes instead: bytes
// the reference lacks get zero embeddings and an output bias of −1e4, and <unk> is left
// out, so log-probabilities differ from the reference's by log(1 − p(<unk>)): close, not
// exact.
//
// # Fixtures
//
// testdata/ holds two models trained by the reference (post-norm and pre-norm), the
// log-probabilities and cache lengths of its own eval-mode forward over 24 blocks, and
// the data; testdata/README.md says how they were made. The tests check that xspan's
// forward, loaded through this package, reproduces every log-probability to 1e-5 and
// every cache length exactly.
package refckpt
