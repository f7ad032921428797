#ifndef STREAMBUS_CRC32C_H
#define STREAMBUS_CRC32C_H
#include <stddef.h>
#include <stdint.h>
/// Extends `crc` (0 to start) over `length` bytes at `data`.
uint32_t streambus_crc32c_extend(uint32_t crc, const void *data, size_t length);
#endif
