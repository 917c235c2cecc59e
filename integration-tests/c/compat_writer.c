/* A 32-bit (ia32) process for the raw-tracepoint test: built with
 * `gcc -m32`, its syscalls enter the kernel as compat calls, numbered from
 * the ia32 table. It makes COUNT getpid() calls (ia32 number 20, which is
 * writev in the 64-bit table) and COUNT one-byte write()s to /dev/null
 * (ia32 number 4, stat in the 64-bit table), then prints its pid. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 1000;
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0) {
        perror("open /dev/null");
        return 1;
    }
    for (int i = 0; i < count; i++) {
        syscall(SYS_getpid);
        if (write(fd, "x", 1) != 1) {
            perror("write");
            return 1;
        }
    }
    printf("%d\n", (int)getpid());
    return 0;
}
