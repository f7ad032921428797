#include "crc32c.h"
uint32_t streambus_crc32c_extend(uint32_t crc, const void *data, size_t length) {
  (void)data; (void)length;
  return crc;
}
