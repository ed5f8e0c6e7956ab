// The API's browsable page (web/api_docs.py): Swagger UI on the hub's own OpenAPI document.
// A file of the hub's, since the page's Content-Security-Policy runs no inline script.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
