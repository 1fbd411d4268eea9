// The test web application for keel's AJP interop tests (host/ajp/tests/tomcat.rs).
// Compiled by the tests with javac against tomcat10-servlet-api.jar; one servlet, mapped to /*.
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpSession;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.zip.CRC32;

public class KeelTestServlet extends HttpServlet {
    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String path = req.getPathInfo() == null ? "/" : req.getPathInfo();
        switch (path) {
            case "/big": big(req, resp); break;
            case "/slow": slow(req, resp); break;
            case "/etag": etag(req, resp); break;
            case "/session": session(req, resp); break;
            case "/late-read": lateRead(req, resp); break;
            case "/form": form(req, resp); break;
            case "/counter": counter(req, resp); break;
            default: echo(req, resp); break;
        }
    }

    private static long[] drain(InputStream in) throws IOException {
        CRC32 crc = new CRC32();
        byte[] buf = new byte[65536];
        long total = 0;
        int n;
        while ((n = in.read(buf)) >= 0) {
            crc.update(buf, 0, n);
            total += n;
        }
        return new long[] {total, crc.getValue()};
    }

    // Echoes the request as text lines; the body as its length and CRC32.
    private void echo(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        long[] body = drain(req.getInputStream());
        StringBuilder sb = new StringBuilder();
        sb.append("method=").append(req.getMethod()).append('\n');
        sb.append("uri=").append(req.getRequestURI()).append('\n');
        sb.append("query=").append(req.getQueryString()).append('\n');
        sb.append("param.q=").append(req.getParameter("q")).append('\n');
        sb.append("remote=").append(req.getRemoteAddr()).append(':').append(req.getRemotePort()).append('\n');
        sb.append("local=").append(req.getLocalAddr()).append('\n');
        sb.append("server=").append(req.getServerName()).append(':').append(req.getServerPort()).append('\n');
        sb.append("secure=").append(req.isSecure()).append('\n');
        sb.append("body-length=").append(body[0]).append('\n');
        sb.append("body-crc32=").append(body[1]).append('\n');
        for (String name : Collections.list(req.getHeaderNames())) {
            for (String value : Collections.list(req.getHeaders(name))) {
                sb.append("header.").append(name.toLowerCase()).append('=').append(value).append('\n');
            }
        }
        if (req.getCookies() != null) {
            for (jakarta.servlet.http.Cookie c : req.getCookies()) {
                sb.append("cookie.").append(c.getName()).append('=').append(c.getValue()).append('\n');
            }
        }
        byte[] out = sb.toString().getBytes(StandardCharsets.UTF_8);
        resp.setContentType("text/plain;charset=UTF-8");
        resp.setHeader("X-Method", req.getMethod());
        resp.setContentLength(out.length);
        if (!"HEAD".equals(req.getMethod())) {
            resp.getOutputStream().write(out);
        }
    }

    // size bytes of a repeating pattern, no Content-Length (chunks as Tomcat fills its buffer).
    private void big(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        long size = Long.parseLong(req.getParameter("size"));
        resp.setContentType("application/octet-stream");
        OutputStream out = resp.getOutputStream();
        byte[] buf = new byte[8192];
        for (int i = 0; i < buf.length; i++) {
            buf[i] = (byte) (i % 251);
        }
        long left = size;
        while (left > 0) {
            int n = (int) Math.min(left, buf.length);
            out.write(buf, 0, n);
            left -= n;
        }
    }

    // n pieces, each flushed, ms apart.
    private void slow(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        int n = Integer.parseInt(req.getParameter("n"));
        long ms = Long.parseLong(req.getParameter("ms"));
        resp.setContentType("text/plain");
        OutputStream out = resp.getOutputStream();
        for (int i = 0; i < n; i++) {
            out.write(("piece " + i + "\n").getBytes(StandardCharsets.US_ASCII));
            out.flush();
            try {
                Thread.sleep(ms);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    // 304 when If-None-Match matches.
    private void etag(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        resp.setHeader("ETag", "\"v1\"");
        if ("\"v1\"".equals(req.getHeader("If-None-Match"))) {
            resp.setStatus(304);
            return;
        }
        resp.setContentType("text/plain");
        resp.getOutputStream().write("fresh\n".getBytes(StandardCharsets.US_ASCII));
    }

    // Creates a session (JSESSIONID ends in .<jvmRoute>) and counts visits in it.
    private void session(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        HttpSession s = req.getSession(true);
        Integer visits = (Integer) s.getAttribute("visits");
        visits = visits == null ? 1 : visits + 1;
        s.setAttribute("visits", visits);
        resp.setContentType("text/plain");
        resp.getOutputStream().write(("id=" + s.getId() + "\nvisits=" + visits + "\n").getBytes(StandardCharsets.US_ASCII));
    }

    // What a form handler sees: the parameters Tomcat parsed from the body (asked for first,
    // as an application does: reading the input stream first would hide an unparsed body),
    // the length and protocol it was told, the addresses.
    private void form(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        StringBuilder sb = new StringBuilder();
        sb.append("a=").append(req.getParameter("a")).append('\n');
        sb.append("b=").append(req.getParameter("b")).append('\n');
        sb.append("length=").append(req.getContentLength()).append('\n');
        sb.append("protocol=").append(req.getProtocol()).append('\n');
        sb.append("remote=").append(req.getRemoteAddr()).append('\n');
        sb.append("local=").append(req.getLocalAddr()).append('\n');
        resp.setContentType("text/plain;charset=UTF-8");
        resp.getOutputStream().write(sb.toString().getBytes(StandardCharsets.UTF_8));
    }

    // A stateless page whose state keel's session filter keeps (the README's header contract):
    // the state "n=<count>" comes in keel-session; the answer carries n=<count + 1>;
    // ?invalidate and ?rotate send those headers. No HttpSession is used.
    private void counter(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String state = req.getHeader("keel-session");
        long count = 1;
        if (state != null && state.startsWith("n=")) {
            try {
                count = Long.parseLong(state.substring(2)) + 1;
            } catch (NumberFormatException e) {
                count = 1;
            }
        }
        String query = req.getQueryString() == null ? "" : req.getQueryString();
        if ("invalidate".equals(query)) {
            resp.setHeader("keel-session-invalidate", "1");
        } else {
            resp.setHeader("keel-session", "n=" + count);
            if ("rotate".equals(query)) {
                resp.setHeader("keel-session-rotate", "1");
            }
        }
        String store = req.getHeader("keel-session-store");
        String body = "counter=" + count + " served-by=" + System.getProperty("keel.test.route")
            + " session-id=" + req.getHeader("keel-session-id")
            + " store=" + (store == null ? "ok" : store) + "\n";
        resp.setContentType("text/plain");
        resp.getOutputStream().write(body.getBytes(StandardCharsets.US_ASCII));
    }

    // Sends the headers first, then reads the body (GET_BODY_CHUNK after SEND_HEADERS).
    private void lateRead(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        resp.setContentType("text/plain");
        resp.flushBuffer();
        long[] body = drain(req.getInputStream());
        resp.getOutputStream().write(("body-length=" + body[0] + "\nbody-crc32=" + body[1] + "\n").getBytes(StandardCharsets.US_ASCII));
    }
}
