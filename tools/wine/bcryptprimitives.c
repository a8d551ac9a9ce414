/* ProcessPrng for Wine 8.0, which has no bcryptprimitives.dll.
 *
 * Go 1.22 and later Windows programs load bcryptprimitives.dll!ProcessPrng at start-up and
 * abort without it. Windows 10 and Wine 9 ship it; Debian 12's Wine 8.0 does not. The agent's
 * compatibility test runs the official boundary CLI's Windows build under that Wine, so this
 * DLL stands in: the same contract (fill the buffer with random bytes, never fail), served
 * by RtlGenRandom (advapi32!SystemFunction036), which Wine 8.0 has. */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        /* RtlGenRandom takes a ULONG length. */
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!RtlGenRandom(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
