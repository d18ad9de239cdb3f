// A Go panic a few calls deep with traceback=crash: the runtime prints every goroutine,
// then raises SIGABRT on the panicking thread (runtime.crash -> dieFromSignal -> raise),
// which dumps core. The crashing thread's stack is the panicking goroutine's stack:
//   runtime.raise ... runtime.fatalpanic, runtime.gopanic, main.inner, main.outer, main.main,
//   runtime.main, runtime.goexit
// main is pinned to its thread (LockOSThread) so the tid it prints is the one that crashes.
// Two goroutines wait on a channel (parked, no thread of their own); one goroutine blocks in
// a read(2) on a pipe with its own locked thread and prints that thread's tid as
// "reader_tid=N" (its stack: syscall.Syscall ... main.blockedReader, runtime.goexit).
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
)

var sink int

//go:noinline
func idle(ch chan int) {
	sink += <-ch
}

//go:noinline
func blockedReader(fd int, ready chan int) {
	runtime.LockOSThread()
	ready <- syscall.Gettid()
	buf := make([]byte, 1)
	n, _ := syscall.Read(fd, buf)
	sink += n
}

//go:noinline
func inner(depth int) int {
	if depth > 2 {
		panic(fmt.Sprintf("main.inner: depth %d is too deep", depth))
	}
	return depth
}

//go:noinline
func outer(depth int) int {
	r := inner(depth + 1)
	sink += r
	return r * 2
}

func main() {
	debug.SetTraceback("crash")
	runtime.LockOSThread()
	ch := make(chan int)
	for i := 0; i < 2; i++ {
		go idle(ch)
	}
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		panic(err)
	}
	ready := make(chan int)
	go blockedReader(p[0], ready)
	readerTid := <-ready
	time.Sleep(200 * time.Millisecond)
	fmt.Printf("crash_tid=%d\nreader_tid=%d\n", syscall.Gettid(), readerTid)
	os.Stdout.Sync()
	sink = outer(sink + 2)
	fmt.Println(sink, p[1])
}
