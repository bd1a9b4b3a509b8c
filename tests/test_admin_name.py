"""The admin carries the product's name (PRODUCT_NAME), not Django's."""

import pytest
from django.conf import settings
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db


def test_the_admin_pages_say_the_products_name_not_djangos(client):
    login = client.get("/admin/login/").content.decode()
    assert f"<title>Log in | {settings.PRODUCT_NAME} admin</title>" in login
    assert f"{settings.PRODUCT_NAME} administration" in login
    assert "Django" not in login

    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    index = client.get("/admin/").content.decode()
    assert (f"<title>Operations, keys, prices and evaluators | {settings.PRODUCT_NAME} admin"
            "</title>") in index
    assert f'<a href="/admin/">{settings.PRODUCT_NAME} administration</a>' in index
    assert "Django" not in index
