/* The definition of the run's shared state (run.h): a module of its own, so that every part
 * that reads it depends on this leaf and not on whichever part happens to define it. */
#include "run.h"

struct run g_run;
