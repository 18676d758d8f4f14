from job_worker import fields, models


class Product(models.Model):
    _name = "shop.product"
    _description = "Product"
    _order = "sku"
    _indexes = [models.Index("shop_product_active_price", ("active", "price"))]

    sku = fields.Char(required=True, index=True)
    name = fields.Char(required=True)
    price = fields.Float()
    active = fields.Boolean(default=True)
    category = fields.Selection(
        [("misc", "Miscellaneous"), ("food", "Food")], required=True, default="misc"
    )
    label = fields.Char()


class Order(models.Model):
    _name = "shop.order"
    _description = "Order"

    product_id = fields.Many2one("shop.product", required=True, ondelete="cascade")
    quantity = fields.Integer(default=1)
