// Produces tests/traces/go.txt (see README.md): go build -o demo go_src/main.go && ./demo 2> go.txt
package main

import (
	"fmt"
	"os"
)

type Calc struct{ divisor int }

func (c *Calc) Div(n int) int {
	return n / c.divisor
}

func divide(n int, d int) int {
	c := &Calc{divisor: d}
	return c.Div(n)
}

func main() {
	fmt.Println(divide(10, len(os.Args)-1))
}
