import Foundation
import Glibc
import NIOCore
import Testing

@testable import StreamBusTransport

/// A file of `count` bytes following a pattern, and a descriptor of it the caller owns.
private func makeFile(in directory: TemporaryDirectory, name: String, count: Int) throws -> (
  path: String, bytes: [UInt8], descriptor: Int32
) {
  let path = directory.path + "/" + name
  let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
  try Data(bytes).write(to: URL(fileURLWithPath: path))
  let descriptor = open(path, O_RDONLY | O_CLOEXEC)
  try #require(descriptor >= 0)
  return (path, bytes, descriptor)
}

/// Descriptors of this process open on `path` (the test files have unique paths, so tests
/// running in parallel do not disturb the count).
private func openDescriptorCount(of path: String) -> Int {
  let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
  return entries.filter {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == path
  }.count
}

/// Waits up to 5 s for every descriptor of `path` to be closed.
private func allClosed(_ path: String) async throws -> Bool {
  for _ in 0..<500 {
    if openDescriptorCount(of: path) == 0 { return true }
    try await Task.sleep(for: .milliseconds(10))
  }
  return false
}

@Suite struct FramePartsTests {
  @Test func partsArriveAsOneFrameInRequestOrder() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let file = try makeFile(in: directory, name: "records", count: 300_000)
    // The count sees open descriptors (so the checks below can fail).
    #expect(openDescriptorCount(of: file.path) == 1)
    close(file.descriptor)
    let path = file.path
    let server = try await startServer(
      ClosureHandler { frame, _ in
        let request = ParsedRequest(frame)
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return .close(reason: "cannot open test file") }
        let region = FrameFileRegion(
          descriptor: descriptor, position: Int64(request.body.count), byteCount: 200_000)
        // A slow first request: its reply must still come first.
        if request.correlationId == 1 {
          try? await Task.sleep(for: .milliseconds(50))
        }
        return .respondParts([
          .bytes(makeResponse(correlationId: request.correlationId, body: [1, 2])),
          .file(region), .bytes([9]),
          .file(FrameFileRegion(descriptor: dup(descriptor), position: 0, byteCount: 0)),
        ])
      })
    let connection = try await connect(server)
    async let first = connection.send(makeRequest(correlationId: 1, body: [0, 0, 0]))
    async let second = connection.send(makeRequest(correlationId: 2, body: [0]))
    let replies = try await [first, second]
    for (reply, skip) in zip(replies, [3, 1]) {
      #expect(reply.count == 200_007)
      #expect(Array(reply[4..<6]) == [1, 2])
      #expect(Array(reply[6..<200_006]) == Array(file.bytes[skip..<skip + 200_000]))
      #expect(reply.last == 9)
    }
    #expect(correlationId(of: [0, 0, 0, 0] + replies[0]) == 1)
    #expect(correlationId(of: [0, 0, 0, 0] + replies[1]) == 2)
    // Every region's descriptor is closed once its write completed.
    #expect(try await allClosed(path))
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func fileShorterThanItsRegionClosesTheConnectionWithoutAFrame() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let file = try makeFile(in: directory, name: "records", count: 10_000)
    close(file.descriptor)
    let path = file.path
    let server = try await startServer(
      ClosureHandler { frame, _ in
        let request = ParsedRequest(frame)
        if request.correlationId == 1 {
          return .respond(makeResponse(correlationId: 1, body: [7]))
        }
        let descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { return .close(reason: "cannot open test file") }
        let region = FrameFileRegion(descriptor: descriptor, position: 1_000, byteCount: 8_000)
        // Truncated (say, by a follower's log truncation) after the read, before the write.
        _ = ftruncate(descriptor, 4_000)
        return .respondParts([
          .bytes(makeResponse(correlationId: request.correlationId, body: [])), .file(region),
        ])
      })
    let peer = try await RawPeer.connect(to: server.localAddress)
    var request = ByteBuffer()
    for correlationId: Int32 in [1, 2] {
      let payload = makeRequest(correlationId: correlationId)
      request.writeInteger(UInt32(payload.count))
      request.writeBytes(payload)
    }
    let received = try await peer.send(request.copyReadableBytes())
    // The first reply whole, then the close: nothing of the second frame.
    #expect(received == [0, 0, 0, 5] + makeResponse(correlationId: 1, body: [7]))
    #expect(try await allClosed(path))
    await server.shutdownGracefully()
  }

  @Test func regionWithoutItsDescriptorIsRejected() throws {
    let region = FrameFileRegion(descriptor: dup(0), position: 0, byteCount: 0)
    let descriptor = try #require(region.takeDescriptor())
    close(descriptor)
    #expect(region.takeDescriptor() == nil)
    #expect(throws: FramePartsError.self) {
      _ = try frameWrites(parts: [.file(region)], allocator: ByteBufferAllocator())
    }
  }

  @Test func prefixCountsEveryPart() throws {
    let parts: [FramePart] = [.bytes([1, 2, 3]), .bytes([]), .bytes([4])]
    let prepared = try frameWrites(parts: parts, allocator: ByteBufferAllocator())
    #expect(prepared.handles.isEmpty)
    guard case .byteBuffer(let buffer) = try #require(prepared.writes.first),
      prepared.writes.count == 1
    else {
      Issue.record("byte parts should coalesce into one buffer")
      return
    }
    #expect(Array(buffer.readableBytesView) == [0, 0, 0, 4, 1, 2, 3, 4])
  }
}
