"""The platform's routes plus `/bench/parse-only`: a bare Django view that parses the same
JSON body with orjson and answers 202, the raw limit the ingestion API is compared with."""

import orjson
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from llmops.urls import urlpatterns as platform_urlpatterns


@csrf_exempt
def parse_only(request):
    body = orjson.loads(request.body)
    return JsonResponse({"accepted": len(body["spans"])}, status=202)


urlpatterns = [*platform_urlpatterns, path("bench/parse-only", parse_only)]
