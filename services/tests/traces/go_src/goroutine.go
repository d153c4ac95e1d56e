// Produces tests/traces/go_goroutine.txt (see README.md): go build -gcflags=all=-l -o demo go_src/goroutine.go && ./demo 2> go_goroutine.txt
package main

import "sync"

type Job struct{ Name string }

func worker(id int, job *Job, wg *sync.WaitGroup) {
	defer wg.Done()
	println(id, job.Name)
}

func main() {
	var wg sync.WaitGroup
	wg.Add(1)
	go worker(7, nil, &wg)
	wg.Wait()
}
