// Package dataset prepares corpora into dataset folders and reads them back for training
// and evaluation.
//
// A dataset folder holds manifest.json (the format and its version, the vocabulary as a
// tokenize.Spec, the newline policy, and per split its shards with their token counts,
// checksums and the byte and character counts of the text) and the shards themselves,
// zstd-compressed packed token ids with a magic/version header (see shard.go). A copy-task
// folder adds a scored mask per shard and says so in the manifest's Requires list.
//
// Writing: Prep turns text inputs (plain, gzip, zstd, a directory, enwik8's zip) into a
// folder with a byte, char or tokenizer.json vocabulary; PrepCopy generates the copy
// task. Both write through one writer: a temporary folder beside the output, a pool of
// workers encoding shards (and masks), the manifest checked by reading it back, and a
// rename at the end, so that a folder that looks complete is complete.
//
// Reading: Open checks the manifest; a Reader gives whole splits (Tokens, Scored), any
// range of one (ReadAt), shard by shard (All), and the unit its bits-per-character
// figures count in (Manifest.Unit). A Batcher cuts a split into B parallel streams read
// a block at a time, as training and evaluation consume them.
//
// Every shard read is checked against the manifest's token count and checksum; errors
// name the file and wrap the cause (errors.Is(err, fs.ErrNotExist) works through them).
package dataset
