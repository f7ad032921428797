import Testing

@testable import StreamBusProtocol

@Suite struct WireReaderTests {
  @Test func integersRoundTripAtTheirLimits() throws {
    var writer = WireWriter()
    let int16s: [Int16] = [0, 1, -1, .min, .max]
    let int32s: [Int32] = [0, 1, -1, .min, .max, 0x0102_0304]
    let int64s: [Int64] = [0, 1, -1, .min, .max, 0x0102_0304_0506_0708]
    for value in int16s { writer.writeInt16(value) }
    for value in int32s { writer.writeInt32(value) }
    for value in int64s { writer.writeInt64(value) }
    writer.writeInt8(-128)
    writer.writeBool(true)
    writer.writeBool(false)
    var reader = WireReader(writer.bytes)
    for value in int16s { #expect(try reader.readInt16("i16") == value) }
    for value in int32s { #expect(try reader.readInt32("i32") == value) }
    for value in int64s { #expect(try reader.readInt64("i64") == value) }
    #expect(try reader.readInt8("i8") == -128)
    #expect(try reader.readBool("b") == true)
    #expect(try reader.readBool("b") == false)
    #expect(reader.isAtEnd)
    try reader.expectEnd("end")
  }

  @Test func bigEndianByteOrder() {
    var writer = WireWriter()
    writer.writeInt32(0x0A0B_0C0D)
    writer.writeInt64(-2)
    #expect(
      writer.bytes == [0x0A, 0x0B, 0x0C, 0x0D, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE])
  }

  @Test func stringsBytesAndArraysWithNulls() throws {
    var writer = WireWriter()
    writer.writeNullableString(nil)
    writer.writeString("")
    writer.writeString("日本語")
    writer.writeNullableBytes(nil)
    writer.writeBytes([])
    writer.writeBytes([9, 8, 7])
    writer.writeNullableArray(nil as [Int32]?) { $0.writeInt32($1) }
    writer.writeInt32Array([])
    writer.writeInt32Array([1, -1])
    var reader = WireReader(writer.bytes)
    #expect(try reader.readNullableString("s") == nil)
    #expect(try reader.readString("s") == "")
    #expect(try reader.readString("s") == "日本語")
    #expect(try reader.readNullableBytes("b") == nil)
    #expect(try reader.readBytes("b") == [])
    #expect(try reader.readBytes("b") == [9, 8, 7])
    let nullArray = try reader.readNullableArray("a", elementBytesMin: 4) { try $0.readInt32("e") }
    #expect(nullArray == nil)
    #expect(try reader.readInt32Array("a") == [])
    #expect(try reader.readInt32Array("a") == [1, -1])
    #expect(reader.isAtEnd)
  }

  @Test func errorsCarryFieldAndOffset() {
    var reader = WireReader([0, 0, 0, 1, 0, 0])
    #expect(throws: Never.self) { _ = try reader.readInt32("first") }
    let error = thrownError(ProtocolError.self) { _ = try reader.readInt64("second") }
    #expect(error?.code == .truncated)
    #expect(error?.field == "second")
    #expect(error?.offset == 4)
    #expect(reader.offset == 4, "a failed read consumes nothing")
  }

  @Test func trailingBytesReported() {
    let reader = WireReader([1, 2, 3], offset: 1)
    let error = thrownError(ProtocolError.self) { try reader.expectEnd("msg") }
    #expect(error?.code == .trailingBytes)
    #expect(error?.offset == 1)
  }
}
