def test_partner_is_created_and_read_back(env):
    partner = env["res.partner"].create({"name": "Acme"})
    assert partner.name == "Acme"
    assert env["res.partner"].search([("name", "=", "Acme")]) == partner
