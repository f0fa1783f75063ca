/* slot.c -- CRC16/XMODEM (poly 0x1021, init 0) with a byte table built on
 * first use. */
#include "slot.h"

static uint16_t table[256];
static int table_ready;

static void build_table(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint16_t crc = (uint16_t)(i << 8);

        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? (uint16_t)(crc << 1 ^ 0x1021) : (uint16_t)(crc << 1);
        table[i] = crc;
    }
    table_ready = 1;
}

static uint16_t crc16(const char *p, size_t n)
{
    uint16_t crc = 0;

    if (!table_ready)
        build_table();
    while (n--)
        crc = (uint16_t)(crc << 8) ^ table[((crc >> 8) ^ (unsigned char)*p++) & 0xff];
    return crc;
}

unsigned fm_slot(const char *key, size_t len)
{
    size_t s, e;

    /* Only the part between the first '{' and the next '}' is hashed, when
     * it is not empty. */
    for (s = 0; s < len && key[s] != '{'; s++)
        ;
    if (s < len) {
        for (e = s + 1; e < len && key[e] != '}'; e++)
            ;
        if (e < len && e != s + 1)
            return crc16(key + s + 1, e - s - 1) & (FM_SLOTS - 1);
    }
    return crc16(key, len) & (FM_SLOTS - 1);
}
