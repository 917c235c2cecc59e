"""The same records two ways: `unbuffered` makes one write() per record
(buffering=0), `buffered` writes through the default buffered file object.
Usage: python3 writer.py unbuffered|buffered RECORDS"""
import sys
import time

mode, total = sys.argv[1], int(sys.argv[2])
record = b"0123456789abcdefghi\n"
with open("/dev/null", "wb", buffering=0 if mode == "unbuffered" else -1) as out:
    # 10 records every 2 ms: 5,000 a second.
    for written in range(total):
        out.write(record)
        if written % 10 == 9:
            time.sleep(0.002)
