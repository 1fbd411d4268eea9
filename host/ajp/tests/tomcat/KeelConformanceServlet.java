// What Tomcat saw, for keel's conformance run against httpd's mod_proxy_ajp
// (host/tests/ajp_conformance.rs). Mapped to /conformance/* by the Tomcat test support.
//
// /conformance/stash?id=X      the report stored for the request whose x-conformance-id was X
//                              (404 when none came), so that HEAD requests can be compared too
// /conformance/big-headers     answers with large response headers (?size=N: a Set-Cookie of
//                              about N bytes; default 6000)
// anything else                the report: sorted key=value lines, stored under the request's
//                              x-conformance-id header (a test-only header, left out of it)
import jakarta.servlet.http.Cookie;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

public class KeelConformanceServlet extends HttpServlet {
    private static final String ID_HEADER = "x-conformance-id";
    private static final Map<String, String> STASH = new ConcurrentHashMap<>();

    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String path = req.getPathInfo() == null ? "/" : req.getPathInfo();
        if (path.equals("/stash")) {
            stash(req, resp);
        } else if (path.equals("/big-headers")) {
            bigHeaders(req, resp);
        } else {
            report(req, resp);
        }
    }

    private void stash(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String report = STASH.get(String.valueOf(req.getParameter("id")));
        if (report == null) {
            resp.sendError(404, "no request with this x-conformance-id reached Tomcat");
            return;
        }
        text(resp, report, false);
    }

    private void bigHeaders(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String sizeParam = req.getParameter("size");
        int size = sizeParam == null ? 6000 : Integer.parseInt(sizeParam);
        StringBuilder value = new StringBuilder(size);
        for (int i = 0; i < size; i++) {
            value.append((char) ('a' + i % 26));
        }
        resp.addHeader("Set-Cookie", "SSO=" + value + "; Path=/; HttpOnly");
        resp.addHeader("X-Conformance-Big", value.substring(0, Math.min(size, 1000)));
        // Stored too, so that the test sees that the request arrived.
        report(req, resp);
    }

    private void report(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        TreeMap<String, List<String>> r = new TreeMap<>();
        // The parameters first: reading the stream first would hide a body Tomcat did not parse.
        Map<String, String[]> params = req.getParameterMap();
        for (Map.Entry<String, String[]> e : new TreeMap<>(params).entrySet()) {
            for (String v : e.getValue()) {
                put(r, "param." + e.getKey(), v);
            }
        }
        put(r, "method", req.getMethod());
        put(r, "requestURI", req.getRequestURI());
        put(r, "contextPath", req.getContextPath());
        put(r, "servletPath", req.getServletPath());
        put(r, "pathInfo", req.getPathInfo());
        put(r, "queryString", req.getQueryString());
        put(r, "contentLength", String.valueOf(req.getContentLengthLong()));
        put(r, "contentType", req.getContentType());
        put(r, "characterEncoding", req.getCharacterEncoding());
        put(r, "protocol", req.getProtocol());
        put(r, "scheme", req.getScheme());
        put(r, "isSecure", String.valueOf(req.isSecure()));
        put(r, "remoteAddr", req.getRemoteAddr());
        put(r, "remoteHost", req.getRemoteHost());
        put(r, "remotePort", String.valueOf(req.getRemotePort()));
        put(r, "remoteUser", req.getRemoteUser());
        put(r, "authType", req.getAuthType());
        put(r, "localAddr", req.getLocalAddr());
        put(r, "localName", req.getLocalName());
        put(r, "localPort", String.valueOf(req.getLocalPort()));
        put(r, "serverName", req.getServerName());
        put(r, "serverPort", String.valueOf(req.getServerPort()));
        put(r, "requestedSessionId", req.getRequestedSessionId());
        put(r, "requestedSessionIdFromCookie", String.valueOf(req.isRequestedSessionIdFromCookie()));
        put(r, "requestedSessionIdFromURL", String.valueOf(req.isRequestedSessionIdFromURL()));
        for (String name : Collections.list(req.getHeaderNames())) {
            if (name.equalsIgnoreCase(ID_HEADER)) {
                continue;
            }
            for (String v : Collections.list(req.getHeaders(name))) {
                put(r, "header." + name.toLowerCase(), v);
            }
        }
        if (req.getCookies() != null) {
            for (Cookie c : req.getCookies()) {
                put(r, "cookie." + c.getName(), c.getValue());
            }
        }
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IOException(e);
        }
        long length = 0;
        InputStream in = req.getInputStream();
        byte[] buf = new byte[65536];
        int n;
        while ((n = in.read(buf)) >= 0) {
            sha.update(buf, 0, n);
            length += n;
        }
        put(r, "body.length", String.valueOf(length));
        StringBuilder hex = new StringBuilder();
        for (byte b : sha.digest()) {
            hex.append(String.format("%02x", b));
        }
        put(r, "body.sha256", hex.toString());

        StringBuilder sb = new StringBuilder();
        for (Map.Entry<String, List<String>> e : r.entrySet()) {
            for (String v : e.getValue()) {
                sb.append(e.getKey()).append('=').append(v).append('\n');
            }
        }
        String report = sb.toString();
        String id = req.getHeader(ID_HEADER);
        if (id != null) {
            STASH.put(id, report);
        }
        text(resp, report, "HEAD".equals(req.getMethod()));
    }

    private static void put(TreeMap<String, List<String>> r, String key, String value) {
        // Values are kept on one line each; a line break would make two entries.
        String v = value == null ? "(null)" : value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r");
        r.computeIfAbsent(key, k -> new ArrayList<>()).add(v);
    }

    private static void text(HttpServletResponse resp, String text, boolean head) throws IOException {
        byte[] out = text.getBytes(StandardCharsets.UTF_8);
        resp.setContentType("text/plain;charset=UTF-8");
        resp.setContentLength(out.length);
        if (!head) {
            resp.getOutputStream().write(out);
        }
    }
}
