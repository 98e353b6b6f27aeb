-- wrk script: POST an OpenAI Images request (key from the KEY env var)
wrk.method = "POST"
wrk.body = '{"model":"gpt-image-1","prompt":"a cat","size":"1024x1024","response_format":"b64_json"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "sk-bench")
