/* harrier: the program. Everything happens in cli_main(). */
#include "runner/cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
