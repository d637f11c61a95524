package tokenize_test

import (
	"fmt"

	"xspan/tokenize"
)

func ExampleCharSet() {
	var cs tokenize.CharSet
	if err := cs.Add([]byte("abracadabra")); err != nil {
		panic(err)
	}
	v := cs.Vocab()
	ids, _ := v.Encode([]byte("cabaret"))
	fmt.Println(v.Size(), ids)
	fmt.Printf("%s\n", v.Decode(ids))
	// Output:
	// 6 [2 0 1 0 4 5 5]
	// cabar��
}
