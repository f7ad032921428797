// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by Kafka record batches.
//
// Two implementations that must agree bit for bit: the SSE4.2 `crc32` instruction
// (about 8 bytes per cycle on one stream, so CRC never dominates the append path), and a
// slice-by-8 table fallback for CPUs without it (and for non-x86 builds).
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define STREAMBUS_CRC32C_X86 1
#endif

static const uint32_t castagnoli_reflected = 0x82F63B78u;

// tables[k][b]: CRC of byte b followed by k zero bytes; filled once on first use.
static uint32_t tables[8][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
  for (uint32_t byte = 0; byte < 256; byte++) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; bit++) {
      crc = (crc & 1u) ? (crc >> 1) ^ castagnoli_reflected : crc >> 1;
    }
    tables[0][byte] = crc;
  }
  for (uint32_t byte = 0; byte < 256; byte++) {
    uint32_t crc = tables[0][byte];
    for (int slice = 1; slice < 8; slice++) {
      crc = tables[0][crc & 0xFFu] ^ (crc >> 8);
      tables[slice][byte] = crc;
    }
  }
}

static inline uint64_t load_le64(const uint8_t *bytes) {
  uint64_t word;
  memcpy(&word, bytes, sizeof word);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  word = __builtin_bswap64(word);
#endif
  return word;
}

uint32_t streambus_crc32c_extend_software(uint32_t crc, const void *data, size_t length) {
  pthread_once(&tables_once, build_tables);
  const uint8_t *bytes = (const uint8_t *)data;
  uint32_t state = ~crc;
  while (length >= 8) {
    uint64_t word = load_le64(bytes) ^ state;
    state = tables[7][word & 0xFF] ^ tables[6][(word >> 8) & 0xFF] ^
            tables[5][(word >> 16) & 0xFF] ^ tables[4][(word >> 24) & 0xFF] ^
            tables[3][(word >> 32) & 0xFF] ^ tables[2][(word >> 40) & 0xFF] ^
            tables[1][(word >> 48) & 0xFF] ^ tables[0][word >> 56];
    bytes += 8;
    length -= 8;
  }
  while (length > 0) {
    state = tables[0][(state ^ *bytes) & 0xFFu] ^ (state >> 8);
    bytes++;
    length--;
  }
  return ~state;
}

#if STREAMBUS_CRC32C_X86
// The crc32 instruction has a latency of 3 cycles but a throughput of 1 per cycle, so one
// dependent chain uses a third of it. Long buffers are cut into three consecutive blocks
// run as independent chains, then joined: CRC state is linear over GF(2), so the state
// after block A followed by block B is shift(state_A, |B|) ^ state_B, where shift advances
// a state over |B| zero bytes. shift is a 32x32 bit matrix, precomputed into four
// byte-indexed tables per block length.
enum { long_block = 8192, short_block = 256 };
static uint32_t shift_long[4][256];
static uint32_t shift_short[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

static uint32_t matrix_times(const uint32_t *matrix, uint32_t vector) {
  uint32_t sum = 0;
  for (int bit = 0; vector != 0; bit++, vector >>= 1) {
    if (vector & 1u) sum ^= matrix[bit];
  }
  return sum;
}

static void matrix_square(uint32_t *square, const uint32_t *matrix) {
  for (int bit = 0; bit < 32; bit++) square[bit] = matrix_times(matrix, matrix[bit]);
}

// Tables for advancing a state over `bytes` zero bytes (a power of two).
static void build_shift_tables(uint32_t tables_out[4][256], size_t bytes) {
  uint32_t operator[32], squared[32];
  // One zero bit: the reflected register shifts right, folding in the polynomial.
  operator[0] = castagnoli_reflected;
  for (int bit = 1; bit < 32; bit++) operator[bit] = 1u << (bit - 1);
  for (size_t bits = 1; bits < bytes * 8; bits *= 2) {
    matrix_square(squared, operator);
    memcpy(operator, squared, sizeof operator);
  }
  for (int byte_index = 0; byte_index < 4; byte_index++) {
    for (uint32_t value = 0; value < 256; value++) {
      tables_out[byte_index][value] = matrix_times(operator, value << (8 * byte_index));
    }
  }
}

static void build_all_shift_tables(void) {
  build_shift_tables(shift_long, long_block);
  build_shift_tables(shift_short, short_block);
}

static inline uint32_t shift_state(uint32_t tables_in[4][256], uint32_t state) {
  return tables_in[0][state & 0xFF] ^ tables_in[1][(state >> 8) & 0xFF] ^
         tables_in[2][(state >> 16) & 0xFF] ^ tables_in[3][state >> 24];
}

__attribute__((target("sse4.2")))
static inline uint64_t three_way(uint64_t state, const uint8_t **bytes, size_t *length,
                                 size_t block, uint32_t tables_in[4][256]) {
  while (*length >= 3 * block) {
    const uint8_t *first = *bytes;
    uint64_t crc0 = state, crc1 = 0, crc2 = 0;
    for (size_t at = 0; at < block; at += 8) {
      uint64_t word0, word1, word2;
      memcpy(&word0, first + at, 8);
      memcpy(&word1, first + block + at, 8);
      memcpy(&word2, first + 2 * block + at, 8);
      crc0 = _mm_crc32_u64(crc0, word0);
      crc1 = _mm_crc32_u64(crc1, word1);
      crc2 = _mm_crc32_u64(crc2, word2);
    }
    state = shift_state(tables_in, (uint32_t)crc0) ^ (uint32_t)crc1;
    state = shift_state(tables_in, (uint32_t)state) ^ (uint32_t)crc2;
    *bytes += 3 * block;
    *length -= 3 * block;
  }
  return state;
}

__attribute__((target("sse4.2")))
uint32_t streambus_crc32c_extend_hardware(uint32_t crc, const void *data, size_t length) {
  const uint8_t *bytes = (const uint8_t *)data;
  uint64_t state = (uint32_t)~crc;
  if (length >= 3 * short_block) {
    pthread_once(&shift_once, build_all_shift_tables);
    state = three_way(state, &bytes, &length, long_block, shift_long);
    state = three_way(state, &bytes, &length, short_block, shift_short);
  }
  while (length >= 8) {
    uint64_t word;
    memcpy(&word, bytes, sizeof word);
    state = _mm_crc32_u64(state, word);
    bytes += 8;
    length -= 8;
  }
  uint32_t state32 = (uint32_t)state;
  while (length > 0) {
    state32 = _mm_crc32_u8(state32, *bytes);
    bytes++;
    length--;
  }
  return ~state32;
}

bool streambus_crc32c_has_hardware(void) {
  return __builtin_cpu_supports("sse4.2") != 0;
}
#else
uint32_t streambus_crc32c_extend_hardware(uint32_t crc, const void *data, size_t length) {
  // No instruction to use on this architecture; callers are told so by has_hardware.
  return streambus_crc32c_extend_software(crc, data, length);
}

bool streambus_crc32c_has_hardware(void) { return false; }
#endif

// Decided once: the answer cannot change while the process runs.
static int hardware_available = -1;

uint32_t streambus_crc32c_extend(uint32_t crc, const void *data, size_t length) {
  int available = __atomic_load_n(&hardware_available, __ATOMIC_RELAXED);
  if (available < 0) {
    available = streambus_crc32c_has_hardware() ? 1 : 0;
    __atomic_store_n(&hardware_available, available, __ATOMIC_RELAXED);
  }
  return available ? streambus_crc32c_extend_hardware(crc, data, length)
                   : streambus_crc32c_extend_software(crc, data, length);
}
