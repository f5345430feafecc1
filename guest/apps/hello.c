/* The smallest useful guest: greets and echoes its arguments. */
#include <vmrpc.h>

int main(int argc, char **argv)
{
	printf("hello from vmrpc guest\n");
	for (int i = 0; i < argc; i++)
		printf("arg[%d]=%s\n", i, argv[i]);
	return 0;
}
