// The same records two ways: `unbuffered` makes one write() per record
// (os.File), `buffered` writes through a bufio.Writer flushed by a ticker.
// Usage: writer unbuffered|buffered RECORDS
package main

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"time"
)

func main() {
	total, _ := strconv.Atoi(os.Args[2])
	record := []byte("0123456789abcdefghi\n")
	file, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	if err != nil {
		panic(err)
	}
	var out io.Writer = file
	var buffered *bufio.Writer
	if os.Args[1] == "buffered" {
		buffered = bufio.NewWriterSize(file, 64<<10)
		out = buffered
	}
	ticker := time.NewTicker(100 * time.Millisecond)
	// 10 records every 2 ms: 5,000 a second.
	for written := 0; written < total; written++ {
		out.Write(record)
		if written%10 == 9 {
			time.Sleep(2 * time.Millisecond)
			select {
			case <-ticker.C:
				if buffered != nil {
					buffered.Flush()
				}
			default:
			}
		}
	}
	if buffered != nil {
		buffered.Flush()
	}
}
