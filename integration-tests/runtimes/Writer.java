// The same records two ways: `unbuffered` makes one write() per record
// (FileOutputStream), `buffered` writes through a BufferedOutputStream.
// Usage: java Writer.java unbuffered|buffered RECORDS
import java.io.BufferedOutputStream;
import java.io.FileOutputStream;
import java.io.OutputStream;

public class Writer {
    public static void main(String[] args) throws Exception {
        int total = Integer.parseInt(args[1]);
        byte[] record = "0123456789abcdefghi\n".getBytes();
        OutputStream file = new FileOutputStream("/dev/null");
        OutputStream out = args[0].equals("buffered") ? new BufferedOutputStream(file) : file;
        // 10 records every 2 ms: 5,000 a second.
        for (int written = 0; written < total; written++) {
            out.write(record);
            if (written % 10 == 9) {
                Thread.sleep(2);
            }
        }
        out.close();
    }
}
