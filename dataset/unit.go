package dataset

import "xspan/tokenize"

// Unit says what a bits-per-character figure counts bits per, for a split of a dataset:
// it follows from the vocabulary and, for a tokenizer, from the split's character count.
type Unit struct {
	// Name is "bits per byte" (byte vocabularies), "bits per character" (char
	// vocabularies) or "bits per original character" (tokenizer.json vocabularies).
	Name string `json:"name"`
	// Abbrev is "bpb" or "bpc".
	Abbrev string `json:"abbrev"`
	// PerToken is how many of those units one token stands for on average in the split
	// (1 for byte and char vocabularies).
	PerToken float64 `json:"per_token"`
}

// Unit returns the unit of bpc figures on a split.
func (m *Manifest) Unit(split string) (Unit, error) {
	s, err := m.Split(split)
	if err != nil {
		return Unit{}, err
	}
	switch m.Vocab.Kind {
	case tokenize.KindByte:
		return Unit{Name: "bits per byte", Abbrev: "bpb", PerToken: 1}, nil
	case tokenize.KindChar:
		return Unit{Name: "bits per character", Abbrev: "bpc", PerToken: 1}, nil
	default:
		per := 1.0
		if s.Tokens > 0 && s.Chars > 0 {
			per = float64(s.Chars) / float64(s.Tokens)
		}
		return Unit{Name: "bits per original character", Abbrev: "bpc", PerToken: per}, nil
	}
}
