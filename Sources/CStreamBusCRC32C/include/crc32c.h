#ifndef STREAMBUS_CRC32C_H
#define STREAMBUS_CRC32C_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/// Extends `crc` (0 to start) over `length` bytes at `data`, using the SSE4.2 `crc32`
/// instruction when the CPU has it and the table-driven software path otherwise.
uint32_t streambus_crc32c_extend(uint32_t crc, const void *data, size_t length);

/// Same result as `streambus_crc32c_extend`, always computed in software (slice-by-8).
uint32_t streambus_crc32c_extend_software(uint32_t crc, const void *data, size_t length);

/// Same result as `streambus_crc32c_extend`, always computed with the SSE4.2 instruction.
/// Only call it when `streambus_crc32c_has_hardware()` is true: it faults otherwise.
uint32_t streambus_crc32c_extend_hardware(uint32_t crc, const void *data, size_t length);

/// True when this CPU can run `streambus_crc32c_extend_hardware`.
bool streambus_crc32c_has_hardware(void);

#endif
