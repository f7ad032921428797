import Logging
import NIOCore
import ServiceLifecycle
import Testing

@testable import StreamBusTransport

@Suite struct FrameServerTests {
  @Test func echoRoundTrips() async throws {
    let server = try await startServer(echoHandler)
    let connection = try await connect(server)
    for size in [0, 1, 1000, 300_000] {
      let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
      let response = try await connection.send(makeRequest(correlationId: Int32(size), body: body))
      #expect(response == makeResponse(correlationId: Int32(size), body: body))
    }
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func pipelinedRequestsAreAnsweredInOrderDespiteOutOfOrderCompletion() async throws {
    let handler = ClosureHandler { frame, _ in
      .deferred {
        try? await Task.sleep(for: .microseconds(Int.random(in: 0...2000)))
        let request = ParsedRequest(frame)
        return .respond(makeResponse(correlationId: request.correlationId, body: request.body))
      }
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let requestCount = 1000
    try await withThrowingTaskGroup(of: Void.self) { group in
      for index in 0..<requestCount {
        group.addTask {
          let body: [UInt8] = [UInt8(index % 256), UInt8(index / 256)]
          let response = try await connection.send(
            makeRequest(correlationId: Int32(index), body: body))
          #expect(response == makeResponse(correlationId: Int32(index), body: body))
        }
      }
      try await group.waitForAll()
    }
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func responsesKeepRequestOrderOnTheWire() async throws {
    // Later requests finish first; the raw bytes must still come back in request order.
    let arrivals = Gate()
    await arrivals.open()
    let completions = Recorder()
    let handler = ClosureHandler { frame, _ in
      let request = ParsedRequest(frame)
      return .deferred {
        await arrivals.pass()
        try? await Task.sleep(for: .milliseconds(Int(10 - request.correlationId) * 5))
        await completions.append(request.correlationId)
        return .respond(makeResponse(correlationId: request.correlationId, body: []))
      }
    }
    let server = try await startServer(handler)
    var bytes: [UInt8] = []
    for id in 0..<10 {
      bytes +=
        ByteBufferAllocator().frameBuffer(payload: makeRequest(correlationId: Int32(id)))
        .readableBytesView
    }
    let peer = try await RawPeer.connect(to: server.localAddress)
    let collect = Task { try await peer.send(bytes) }
    await arrivals.waitUntilStarted(10)
    await server.shutdownGracefully()
    var received = ByteBuffer(bytes: try await collect.value)
    var ids: [Int32] = []
    while let length = received.readInteger(as: UInt32.self) {
      #expect(length == 4)
      let id = received.readInteger(as: Int32.self)
      ids.append(try #require(id))
    }
    #expect(ids == Array(0..<10))
    // The deferred replies really finished out of order (the last one first).
    #expect(await completions.values.first == 9)
  }

  @Test func oversizedFrameClosesOnlyThatConnection() async throws {
    let server = try await startServer(echoHandler) { $0.frameBytesMax = 1024 }
    let healthy = try await connect(server)
    let peer = try await RawPeer.connect(to: server.localAddress)
    var prefix = ByteBuffer()
    prefix.writeInteger(UInt32(1025))
    // The server must hang up without waiting for the 1025 body bytes.
    let received = try await peer.send(Array(prefix.readableBytesView))
    #expect(received.isEmpty)
    let response = try await healthy.send(makeRequest(correlationId: 7, body: [1]))
    #expect(response == makeResponse(correlationId: 7, body: [1]))
    let fresh = try await connect(server)
    #expect(
      try await fresh.send(makeRequest(correlationId: 8))
        == makeResponse(correlationId: 8, body: []))
    await healthy.close()
    await fresh.close()
    await server.shutdownGracefully()
  }

  @Test func negativeLengthClosesTheConnection() async throws {
    let server = try await startServer(echoHandler)
    let peer = try await RawPeer.connect(to: server.localAddress)
    var prefix = ByteBuffer()
    prefix.writeInteger(Int32(-1))
    prefix.writeBytes([1, 2, 3])
    #expect(try await peer.send(Array(prefix.readableBytesView)).isEmpty)
    let connection = try await connect(server)
    #expect(
      try await connection.send(makeRequest(correlationId: 1))
        == makeResponse(correlationId: 1, body: []))
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func truncatedFrameThenDisconnectNeverReachesTheHandler() async throws {
    let calls = Counter()
    let handler = ClosureHandler { frame, info in
      await calls.increment()
      return await echoHandler.handle(frame: frame, connection: info)
    }
    let server = try await startServer(handler)
    let peer = try await RawPeer.connect(to: server.localAddress)
    let whole = Array(
      ByteBufferAllocator().frameBuffer(payload: makeRequest(correlationId: 1, body: [1, 2, 3]))
        .readableBytesView)
    _ = try await peer.send(Array(whole.dropLast(2)), thenClose: true)
    let connection = try await connect(server)
    #expect(
      try await connection.send(makeRequest(correlationId: 2))
        == makeResponse(correlationId: 2, body: []))
    #expect(await calls.value == 1)
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func manyConcurrentConnections() async throws {
    let server = try await startServer(echoHandler)
    let connectionCount = 50
    let requestsPerConnection = 20
    try await withThrowingTaskGroup(of: Void.self) { group in
      for connectionIndex in 0..<connectionCount {
        group.addTask {
          let connection = try await connect(server)
          for requestIndex in 0..<requestsPerConnection {
            let id = Int32(connectionIndex * 1000 + requestIndex)
            let response = try await connection.send(
              makeRequest(correlationId: id, body: [UInt8(requestIndex)]))
            #expect(response == makeResponse(correlationId: id, body: [UInt8(requestIndex)]))
          }
          await connection.close()
        }
      }
      try await group.waitForAll()
    }
    await server.shutdownGracefully()
  }

  @Test func readingStopsAtTheInflightBound() async throws {
    // Deferred work counts toward the bound: handler calls stop once 4 are outstanding.
    let gate = Gate()
    let handlerCalls = Counter()
    let handler = ClosureHandler { frame, info in
      await handlerCalls.increment()
      return .deferred {
        await gate.pass()
        return await echoHandler.handle(frame: frame, connection: info)
      }
    }
    let server = try await startServer(handler) { $0.inflightRequestsMax = 4 }
    let connection = try await connect(server)
    let sends = Task {
      try await withThrowingTaskGroup(of: Void.self) { group in
        for id in 0..<20 {
          group.addTask {
            let response = try await connection.send(makeRequest(correlationId: Int32(id)))
            #expect(response == makeResponse(correlationId: Int32(id), body: []))
          }
        }
        try await group.waitForAll()
      }
    }
    await gate.waitUntilStarted(4)
    try await Task.sleep(for: .milliseconds(100))
    #expect(await gate.started == 4)
    #expect(await handlerCalls.value == 4)
    await gate.open()
    try await sends.value
    #expect(await gate.runningMax == 4)
    #expect(await gate.started == 20)
    #expect(await handlerCalls.value == 20)
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func peerThatDoesNotReadStopsRequestProcessing() async throws {
    let arrivals = Gate()
    await arrivals.open()
    let responseBytes = 256 * 1024
    let handler = ClosureHandler { frame, _ in
      await arrivals.pass()
      let request = ParsedRequest(frame)
      return .respond(
        makeResponse(
          correlationId: request.correlationId, body: [UInt8](repeating: 1, count: responseBytes)))
    }
    let server = try await startServer(handler) { $0.inflightRequestsMax = 8 }
    let requestCount = 200
    var bytes: [UInt8] = []
    for id in 0..<requestCount {
      bytes +=
        ByteBufferAllocator().frameBuffer(payload: makeRequest(correlationId: Int32(id)))
        .readableBytesView
    }
    let peer = try await RawPeer.connect(to: server.localAddress)
    let collect = Task { try await peer.send(bytes, readDelayMs: 400) }
    try await Task.sleep(for: .milliseconds(300))
    // Socket buffers hold a few MiB; without backpressure all 200 (50 MiB) would be built.
    let handledWhileBlocked = await arrivals.started
    #expect(handledWhileBlocked < requestCount / 2)
    await arrivals.waitUntilStarted(requestCount)
    await server.shutdownGracefully()
    let received = try await collect.value
    #expect(received.count == requestCount * (4 + 4 + responseBytes))
  }

  @Test func oneWayRequestsKeepOrderWithAnsweredOnes() async throws {
    let received = Counter()
    let handler = ClosureHandler { frame, _ in
      await received.increment()
      let request = ParsedRequest(frame)
      if request.apiKey == 0 {
        return .noResponse
      }
      return .respond(makeResponse(correlationId: request.correlationId, body: request.body))
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    for id in 0..<5 {
      try await connection.sendOneWay(makeRequest(apiKey: 0, correlationId: Int32(id)))
    }
    let response = try await connection.send(makeRequest(apiKey: 1, correlationId: 99, body: [5]))
    #expect(response == makeResponse(correlationId: 99, body: [5]))
    #expect(await received.value == 6)
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func gracefulShutdownWaitsForAnInflightRequest() async throws {
    let gate = Gate()
    let handler = ClosureHandler { frame, info in
      await gate.pass()
      try? await Task.sleep(for: .milliseconds(100))
      return await echoHandler.handle(frame: frame, connection: info)
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let pending = Task { try await connection.send(makeRequest(correlationId: 5, body: [1])) }
    await gate.waitUntilStarted(1)
    await gate.open()
    let clock = ContinuousClock()
    let started = clock.now
    await server.shutdownGracefully()
    #expect(clock.now - started >= .milliseconds(50))
    #expect(try await pending.value == makeResponse(correlationId: 5, body: [1]))
    #expect(server.connectionCount == 0)
    let error = await #expect(throws: TransportError.self) {
      _ = try await connect(server)
    }
    #expect(error?.code == .connectionFailed)
  }

  @Test func shutdownGracePeriodBoundsTheWait() async throws {
    let gate = Gate()
    let handler = ClosureHandler { frame, info in
      await gate.pass()
      return await echoHandler.handle(frame: frame, connection: info)
    }
    let server = try await startServer(handler) { $0.shutdownGracePeriodMs = 100 }
    let connection = try await connect(server)
    let pending = Task { try await connection.send(makeRequest(correlationId: 1)) }
    await gate.waitUntilStarted(1)
    await server.shutdownGracefully()
    let error = await #expect(throws: TransportError.self) { try await pending.value }
    #expect(error?.code == .connectionClosed)
    await gate.open()
  }

  @Test func serviceGroupShutsTheServerDown() async throws {
    let server = try await startServer(echoHandler)
    let group = ServiceGroup(
      configuration: ServiceGroupConfiguration(services: [server], logger: quietLogger))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
      tasks.addTask { try await group.run() }
      let connection = try await connect(server)
      #expect(
        try await connection.send(makeRequest(correlationId: 3))
          == makeResponse(correlationId: 3, body: []))
      await group.triggerGracefulShutdown()
      try await tasks.waitForAll()
      // The client notices the close asynchronously.
      #expect(try await eventually { !connection.isActive })
    }
  }

  @Test func handlerCanCloseTheConnection() async throws {
    let handler = ClosureHandler { frame, info in
      let request = ParsedRequest(frame)
      if request.apiKey == 9 {
        return .close(reason: "test asked to close")
      }
      // Finishes after the close request, whose reply must still wait for this one.
      return .deferred {
        try? await Task.sleep(for: .milliseconds(50))
        return await echoHandler.handle(frame: frame, connection: info)
      }
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let first = Task { try await connection.send(makeRequest(correlationId: 1)) }
    try await Task.sleep(for: .milliseconds(10))
    let second = Task { try await connection.send(makeRequest(apiKey: 9, correlationId: 2)) }
    #expect(try await first.value == makeResponse(correlationId: 1, body: []))
    let error = await #expect(throws: TransportError.self) { try await second.value }
    #expect(error?.code == .connectionClosed)
    await server.shutdownGracefully()
  }
}

actor Counter {
  private(set) var value = 0

  func increment() {
    value += 1
  }
}
